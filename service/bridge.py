"""The hand-off from the generator's worker thread to the event loop.

`OpenAIGenerator` is synchronous, so `AsyncPipeline` runs it on a pool thread and calls its
streaming callback there. `StreamBridge` is that callback. It forwards chunks into the run's bounded
`asyncio.Queue` with `asyncio.run_coroutine_threadsafe`, keeping at most one hand-off in flight:

- when the loop has taken the previous hand-off, a chunk goes at once, alone, so the first token
  (and every token of a stream the loop keeps up with) is never delayed;
- while a hand-off is still in flight (the loop is busy, or the reader is behind and the queue is
  full), further chunks wait in a list and go together in the next hand-off, so a busy loop does
  one wake-up and one queue operation for many chunks instead of one each;
- when `max_pending` chunks are waiting, the callback waits for the hand-off in flight, so a slow
  reader slows the producer (and the upstream read) instead of growing memory.

Once the run is cancelled the callback refuses every further chunk by raising `RunCancelled`, which
unwinds the generator's read loop and gives the thread back to the pool. Chunks still waiting when
the generator returns are handed over by `flush()`, on the loop, after the thread is done.
"""

import asyncio
import concurrent.futures
from typing import Any

from service.errors import RunCancelled

Batch = list[Any]


class StreamBridge:
    def __init__(self, loop: asyncio.AbstractEventLoop, queue: "asyncio.Queue[Any]", max_pending: int) -> None:
        self._loop = loop
        self._queue = queue
        self._max_pending = max_pending
        self._waiting: Batch = []
        self._pending: concurrent.futures.Future[None] | None = None
        self._cancelled = False

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def __call__(self, chunk: Any) -> None:
        """Runs on the worker thread, once per upstream chunk."""
        if self._cancelled:
            raise RunCancelled
        self._waiting.append(chunk)
        pending = self._pending
        if pending is not None and not pending.done():
            if len(self._waiting) < self._max_pending:
                return  # rides with the next hand-off
            self._wait(pending)
        self._hand_off()

    def _hand_off(self) -> None:
        batch, self._waiting = self._waiting, []
        put = self._queue.put(batch)
        try:
            pending = asyncio.run_coroutine_threadsafe(put, self._loop)
        except RuntimeError as error:  # the loop is closed: nobody will read this
            put.close()
            raise RunCancelled from error
        self._pending = pending
        if self._cancelled:  # cancel() ran between the check in __call__ and publishing `pending`
            pending.cancel()

    def _wait(self, pending: "concurrent.futures.Future[None]") -> None:
        try:
            pending.result()
        except concurrent.futures.CancelledError:
            raise RunCancelled from None
        if self._cancelled:
            raise RunCancelled

    async def flush(self) -> None:
        """On the loop, once the generator has returned: hand over the chunks still waiting, in order."""
        pending = self._pending
        if self._cancelled:
            return
        if pending is not None:
            await asyncio.wrap_future(pending)
        if self._waiting:
            batch, self._waiting = self._waiting, []
            await self._queue.put(batch)

    def cancel(self) -> None:
        """Runs on the event loop: refuse further chunks and wake a producer blocked on a full queue."""
        self._cancelled = True
        pending = self._pending
        if pending is not None:
            pending.cancel()
