"""The hand-off from the generator's worker thread to the event loop.

`OpenAIGenerator` is synchronous, so `AsyncPipeline` runs it on a pool thread and calls its
streaming callback there. `StreamBridge` is that callback: it forwards each chunk into the run's
bounded `asyncio.Queue` with `asyncio.run_coroutine_threadsafe` and waits for the put, so a slow
reader holds the producer back instead of growing memory. Once the run is cancelled it refuses
every further chunk by raising `RunCancelled`, which unwinds the generator's read loop and gives
the thread back to the pool.

Before raising, it has the run close its upstream response (`on_refuse`), here on the worker
thread. Left to the SDK, the response is closed by the abandoned stream generator's finalizer,
which runs whenever the garbage collector gets to it, on whatever thread it interrupts; if that
thread holds the shared connection pool's (non-reentrant) lock, it waits for itself, and every
run waits behind it.
"""

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import Any, NoReturn

from service.errors import RunCancelled


class StreamBridge:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        queue: "asyncio.Queue[Any]",
        on_refuse: Callable[[], None] | None = None,
    ) -> None:
        self._loop = loop
        self._queue = queue
        self._on_refuse = on_refuse
        self._cancelled = False
        self._pending: concurrent.futures.Future[None] | None = None

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def __call__(self, chunk: Any) -> None:
        """Runs on the worker thread, once per upstream chunk."""
        if self._cancelled:
            self._refuse()
        put = self._queue.put(chunk)
        try:
            pending = asyncio.run_coroutine_threadsafe(put, self._loop)
        except RuntimeError as error:  # the loop is closed: nobody will read this
            put.close()
            self._refuse(error)
        self._pending = pending
        if self._cancelled:  # cancel() ran between the check above and publishing `pending`
            pending.cancel()
        try:
            pending.result()
        except concurrent.futures.CancelledError:
            self._refuse()
        finally:
            self._pending = None

    def _refuse(self, cause: BaseException | None = None) -> NoReturn:
        if self._on_refuse is not None:
            self._on_refuse()
        raise RunCancelled from cause

    def cancel(self) -> None:
        """Runs on the event loop: refuse further chunks and wake a producer blocked on a full queue."""
        self._cancelled = True
        pending = self._pending
        if pending is not None:
            pending.cancel()
