"""The hand-off from the generator's worker thread to the event loop.

`OpenAIGenerator` is synchronous, so `AsyncPipeline` runs it on a pool thread and calls its
streaming callback there. `StreamBridge` is that callback. It forwards chunks into the run's bounded
`asyncio.Queue` with `asyncio.run_coroutine_threadsafe`, keeping at most one hand-off in flight:

- when no hand-off is in flight, a chunk starts one at once, alone, so the first token (and every
  token of a stream the loop keeps up with) is never delayed;
- while one is in flight (the loop is busy, or the reader is behind and the queue is full), further
  chunks wait in a list, and the hand-off takes them as soon as its put is done: many chunks cost one
  wake-up of the loop, and a chunk never waits for the next one to arrive;
- when `max_pending` chunks are waiting, the callback blocks until the hand-off takes them, so a slow
  reader slows the producer (and the upstream read) instead of growing memory.

Once the run is cancelled the callback refuses every further chunk by raising `RunCancelled`, which
unwinds the generator's read loop and gives the thread back to the pool.

Before it raises, the callback has the run close its upstream response (`on_refuse`), here on the
worker thread. Left to the SDK, the response is closed by the abandoned stream generator's
finalizer, whenever the garbage collector gets to it, on whatever thread it interrupts; if that
thread holds the shared connection pool's (non-reentrant) lock, it waits for itself, and every run
waits behind it.
"""

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any

from service.errors import RunCancelled

Batch = list[Any]


class StreamBridge:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        queue: "asyncio.Queue[Any]",
        max_pending: int,
        on_refuse: Callable[[], None] | None = None,
    ) -> None:
        self._loop = loop
        self._queue = queue
        self._max_pending = max_pending
        self._on_refuse = on_refuse
        self._lock = threading.Lock()
        self._taken = threading.Condition(self._lock)  # the hand-off took the waiting chunks
        self._waiting: Batch = []
        self._pending: concurrent.futures.Future[None] | None = None  # the hand-off in flight
        self._held_back = False  # the producer waits on `_taken`
        self._cancelled = False
        self.received = 0  # chunks the generator has handed over

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def __call__(self, chunk: Any) -> None:
        """Runs on the worker thread, once per upstream chunk."""
        try:
            with self._lock:
                if self._cancelled:
                    raise RunCancelled
                self.received += 1
                self._waiting.append(chunk)
                if self._pending is not None:
                    while len(self._waiting) >= self._max_pending and not self._cancelled:
                        self._held_back = True
                        self._taken.wait()  # the reader is behind: hold the producer back
                        self._held_back = False
                    if self._cancelled:
                        raise RunCancelled
                    return  # the hand-off in flight takes it when its put is done
                batch, self._waiting = self._waiting, []
                hand_off = self._hand_off(batch)
                try:
                    self._pending = asyncio.run_coroutine_threadsafe(hand_off, self._loop)
                except RuntimeError as error:  # the loop is closed: nobody will read this
                    hand_off.close()
                    raise RunCancelled from error
        except RunCancelled:  # raised above, with the lock released by now
            if self._on_refuse is not None:
                self._on_refuse()
            raise

    async def _hand_off(self, batch: Batch) -> None:
        """On the loop: put batches until no chunk is waiting, then mark the hand-off done."""
        queue = self._queue
        while True:
            if queue.full():
                await queue.put(batch)
            else:
                queue.put_nowait(batch)  # the usual case: the collector has taken the last batch
            with self._lock:
                batch, self._waiting = self._waiting, []
                if self._held_back:
                    self._taken.notify()
                if not batch:
                    self._pending = None
                    return

    async def flush(self) -> None:
        """On the loop, once the generator has returned: wait until every chunk is in the queue."""
        pending = self._pending
        if pending is not None and not self._cancelled:
            await asyncio.wait([asyncio.wrap_future(pending)])

    def cancel(self) -> None:
        """Runs on the event loop: refuse further chunks and wake a producer that is waiting."""
        with self._lock:
            self._cancelled = True
            pending = self._pending
            self._taken.notify_all()
        if pending is not None:
            pending.cancel()
