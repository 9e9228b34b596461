"""`LoopLag`: how far behind the event loop is: how long a callback made ready now waits to run.

What it measures: every `INTERVAL` seconds a timer makes a callback ready (`call_soon`), which makes
the next ready, `HOPS` times, and the sample is the time per hop. A callback made ready waits for
what is already ready ahead of it, for the loop's next pass over its sockets with every I/O
callback that pass brings, and, in this process, for the GIL, which the loop shares with a pool
thread per stream. That is the wait every step of a new request sees (its first task step, the
hand-off of its first token, the write of its first event), and it is what a saturated process
makes long: measured under the 200-client overload, 5-25 ms per hop, against 0.0-0.3 ms idle
(docs/performance.md). A timer's own lateness, the other usual measure, was tried first: it moved
less under load (2-13 ms) and more with the neighbours on a shared machine (up to ~5 ms idle),
because it mostly measures how late the OS wakes the loop from its wait; a saturated process's
loop rarely waits. CPU utilisation says a process is busy, not that work queues; a stream count is
what `HAYSTREAM_MAX_STREAMS` already bounds, and knows nothing of what each stream costs. The
probe costs `HOPS + 1` callbacks per `INTERVAL`.

Smoothing: the mean of the last `WINDOW` samples (at least `WINDOW * INTERVAL` seconds of the
loop's life) leaving out the `OUTLIERS` largest. A loop that stays behind is behind on every
sample, so the figure follows it within a few; a single stall that is over (a garbage collection,
a cold first request, a slow log write) says nothing about the next request, and moves it not at
all (a time-weighted mean, tried first, refused the requests that followed each such stall). Times
are `time.perf_counter()`, not the loop's clock: uvloop's is cached per pass, at millisecond
resolution.
"""

import asyncio
import time
from collections import deque
from typing import Protocol

INTERVAL = 0.025  # seconds between samples
HOPS = 3  # callbacks in a row per sample (with uvloop the first runs in the same pass as the timer)
WINDOW = 8  # samples the figure is taken over
OUTLIERS = 2  # the largest samples of the window left out


class Lag(Protocol):
    """What admission, readiness and the metrics read: the smoothed lag, in seconds."""

    @property
    def seconds(self) -> float: ...


class LagWindow:
    """The last `size` samples (seconds late) and their mean without the `outliers` largest: pure."""

    def __init__(self, size: int = WINDOW, outliers: int = OUTLIERS) -> None:
        self._samples: deque[float] = deque(maxlen=size)
        self._outliers = outliers
        self.value = 0.0

    def add(self, sample: float) -> float:
        self._samples.append(sample)
        kept = sorted(self._samples)[: max(len(self._samples) - self._outliers, 1)]
        self.value = sum(kept) / len(kept)
        return self.value


class LoopLag:
    """Started on the running loop by the app's lifespan; `seconds` is the smoothed lag."""

    def __init__(self, interval: float = INTERVAL) -> None:
        self.interval = interval
        self.last = 0.0  # the latest sample, seconds
        self._window = LagWindow()
        self._timer: asyncio.TimerHandle | None = None

    @property
    def seconds(self) -> float:
        return self._window.value

    def start(self) -> None:
        self._schedule()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self.interval, self._tick)

    def _tick(self) -> None:
        asyncio.get_running_loop().call_soon(self._hop, time.perf_counter(), HOPS)

    def _hop(self, started: float, left: int) -> None:
        if left > 1:
            asyncio.get_running_loop().call_soon(self._hop, started, left - 1)
            return
        self.last = (time.perf_counter() - started) / HOPS
        self._window.add(self.last)
        if self._timer is not None:  # (not stopped meanwhile)
            self._schedule()
