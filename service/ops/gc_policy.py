"""The garbage collector's settings for a long-running streaming process.

CPython's full (generation 2) collection walks every tracked object that is alive: the imported
libraries (Haystack, the OpenAI SDK, pydantic, FastAPI) and every live stream's chunks. It holds the
GIL while it does, so every stream stalls at once: with the default thresholds, 100 streams brought
several stalls of tens to hundreds of milliseconds a run (measured in docs/performance.md, "Full
garbage collections off the busy path"). Three changes, in the served process:

- freeze what exists once the app is built (modules, classes, the app): full collections never walk
  it again (`settle_heap`);
- a full collection after 100 generation-1 collections instead of 10: under steady load, one every
  few tens of seconds rather than every few seconds;
- the full collection this puts off runs when the service has had no run for a second
  (`IdleGC`), so the garbage of a busy spell (per-request objects in reference cycles) is
  reclaimed when a pause costs nobody a token, not left for the next busy spell.

Reference counting frees everything else as before; only objects in reference cycles wait.
"""

import asyncio
import gc

FULL_COLLECTION_EVERY = 100  # generation-1 collections between full ones (CPython's default: 10)
IDLE_COLLECT_AFTER = 1.0  # seconds without a run before the put-off full collection runs

_settled = False


def settle_heap() -> None:
    global _settled
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)
    _settled = True


class IdleGC:
    """Told when the service gets busy and when it goes idle; collects fully after `delay` s of idleness."""

    def __init__(self, delay: float = IDLE_COLLECT_AFTER) -> None:
        self._delay = delay
        self._timer: asyncio.TimerHandle | None = None
        self._garbage = False  # a run since the last collection

    @classmethod
    def for_process(cls) -> "IdleGC | None":
        """One when this process settled its heap (the served app); None otherwise (an app in tests)."""
        return cls() if _settled else None

    def busy(self) -> None:
        self._garbage = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def idle(self) -> None:
        if self._garbage and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._delay, self._collect)

    def _collect(self) -> None:
        self._timer = None
        self._garbage = False
        gc.collect()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
