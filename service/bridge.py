"""The hand-off from the generator's worker thread to the event loop.

`OpenAIGenerator` is synchronous, so `AsyncPipeline` runs it on a pool thread and calls its
streaming callback there. `StreamBridge` is that callback: it forwards each chunk into the run's
bounded `asyncio.Queue` with `asyncio.run_coroutine_threadsafe` and waits for the put, so a slow
reader holds the producer back instead of growing memory. Once the run is cancelled it refuses
every further chunk by raising `RunCancelled`, which unwinds the generator's read loop, closes
the upstream response, and gives the thread back to the pool.
"""

import asyncio
import concurrent.futures
from typing import Any

from service.errors import RunCancelled


class StreamBridge:
    def __init__(self, loop: asyncio.AbstractEventLoop, queue: "asyncio.Queue[Any]") -> None:
        self._loop = loop
        self._queue = queue
        self._cancelled = False
        self._pending: concurrent.futures.Future[None] | None = None

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def __call__(self, chunk: Any) -> None:
        """Runs on the worker thread, once per upstream chunk."""
        if self._cancelled:
            raise RunCancelled
        put = self._queue.put(chunk)
        try:
            pending = asyncio.run_coroutine_threadsafe(put, self._loop)
        except RuntimeError as error:  # the loop is closed: nobody will read this
            put.close()
            raise RunCancelled from error
        self._pending = pending
        if self._cancelled:  # cancel() ran between the check above and publishing `pending`
            pending.cancel()
        try:
            pending.result()
        except concurrent.futures.CancelledError:
            raise RunCancelled from None
        finally:
            self._pending = None

    def cancel(self) -> None:
        """Runs on the event loop: refuse further chunks and wake a producer blocked on a full queue."""
        self._cancelled = True
        pending = self._pending
        if pending is not None:
            pending.cancel()
