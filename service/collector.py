"""`ChunkCollector`: turns a run's queue into the events a client reads.

The queue carries what the worker thread produced, in order: text chunks, then exactly one
`Finished` or `Failed`. The collector adds what only the loop side knows: the `metadata` event
first, run-scoped increasing ids, a keep-alive whenever nothing was sent for a while, and the
closing `end` or `error` event.
"""

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from haystack.dataclasses import StreamingChunk

from service.errors import RunError
from service.sse import Event

KEEPALIVE = None  # what the collector yields when it is time for a keep-alive comment


@dataclass(frozen=True)
class Finished:
    meta: dict[str, Any]


@dataclass(frozen=True)
class Failed:
    error: BaseException


QueueItem = StreamingChunk | Finished | Failed | None
StreamItem = Event | None


class ChunkCollector:
    def __init__(
        self,
        queue: "asyncio.Queue[QueueItem]",
        *,
        metadata: dict[str, Any],
        classify: Callable[[BaseException], RunError],
        keepalive_interval: float,
    ) -> None:
        self._queue = queue
        self._metadata = metadata
        self._classify = classify
        self._interval = keepalive_interval
        self._last_sent = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self.chunks = 0
        self.first_chunk_at: float | None = None
        self.error: RunError | None = None
        self.finished = False

    async def events(self) -> AsyncIterator[StreamItem]:
        loop = asyncio.get_running_loop()
        self._last_sent = loop.time()
        self._timer = loop.call_later(self._interval, self._tick)
        try:
            yield Event("metadata", json.dumps(self._metadata), 0)
            while True:
                item = await self._queue.get()
                self._last_sent = loop.time()
                if isinstance(item, StreamingChunk):
                    if item.content:
                        if self.first_chunk_at is None:
                            self.first_chunk_at = self._last_sent
                        self.chunks += 1
                        yield Event("data", json.dumps(item.content, ensure_ascii=False), self.chunks)
                elif isinstance(item, Finished):
                    self.finished = True
                    yield Event("end", json.dumps(self._end_data(item.meta)), self.chunks + 1)
                    return
                elif isinstance(item, Failed):
                    self.error = self._classify(item.error)
                    yield Event("error", json.dumps(_error_data(self.error)), self.chunks + 1)
                    return
                else:
                    yield KEEPALIVE
        finally:
            self._timer.cancel()

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        idle = loop.time() - self._last_sent
        if idle >= self._interval * 0.99 and self._queue.empty():
            self._queue.put_nowait(KEEPALIVE)
            idle = 0.0
        self._timer = loop.call_later(max(self._interval - idle, 0.01), self._tick)

    def _end_data(self, meta: dict[str, Any]) -> dict[str, Any]:
        return {
            "finish_reason": meta.get("finish_reason"),
            "usage": _plain(meta.get("usage")),
            "chunks": self.chunks,
        }


def _error_data(error: RunError) -> dict[str, Any]:
    data: dict[str, Any] = {"type": error.type, "message": error.message, "retryable": error.retryable}
    if error.retry_after is not None:
        data["retry_after"] = error.retry_after
    return data


def _plain(usage: Any) -> dict[str, Any] | None:
    """Usage as plain JSON: the SDK may nest pydantic objects (token details) and unset fields in it."""
    if not isinstance(usage, dict):
        return None
    plain = json.loads(json.dumps(usage, default=lambda obj: obj.model_dump() if hasattr(obj, "model_dump") else None))
    return {key: value for key, value in plain.items() if value is not None}
