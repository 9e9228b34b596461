"""`ChunkCollector`: turns a run's queue into the events a client reads.

The queue carries what the worker thread produced, in order: batches of text chunks (see
`service/streaming/bridge.py`), then exactly one `Finished` or `Failed`. The collector adds what only the loop
side knows: the `metadata` event first, run-scoped increasing ids, a keep-alive whenever nothing was
sent for a while, and the closing `end` or `error` event.

Chunks that are already waiting when the collector comes round (the reader or the loop fell behind)
become one `data` event carrying their text joined, so a backlog costs one event, not one per chunk;
a stream the service keeps up with sends one event per upstream chunk. The text is never changed,
and `end` counts upstream chunks, not events.

`metadata` names the model the service asked for (`HAYSTREAM_MODEL`): it goes out before the
upstream has answered. `end` carries `model` as the upstream's chunks named it (null when they named
none): an alias resolved to a dated version, or a local server that serves whatever it has loaded.
"""

import asyncio
import json
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from haystack.dataclasses import StreamingChunk

from service.errors import RunError
from service.streaming.sse import Event, json_string

KEEPALIVE_DUE = None  # what the collector yields when it is time for a keep-alive comment
_NOTHING = object()


@dataclass(frozen=True)
class Finished:
    meta: dict[str, Any]


@dataclass(frozen=True)
class Failed:
    error: BaseException


QueueItem = list[StreamingChunk] | Finished | Failed | None
StreamItem = Event | None


class ChunkCollector:
    def __init__(
        self,
        queue: "asyncio.Queue[QueueItem]",
        *,
        metadata: dict[str, Any],
        classify: Callable[[BaseException], RunError],
        keepalive_interval: float,
        on_finished: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._queue = queue
        self._metadata = metadata
        self._classify = classify
        self._interval = keepalive_interval
        self._on_finished = on_finished  # awaited once, before `end` is sent (e.g. to store a completed turn)
        self._last_sent = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self.chunks = 0
        self._texts: list[str] = []
        self.first_chunk_at: float | None = None
        self.error: RunError | None = None
        self.finished = False
        self.end: dict[str, Any] | None = None  # the `end` event's data, once sent

    async def events(self) -> AsyncGenerator[StreamItem, None]:
        loop = asyncio.get_running_loop()
        self._last_sent = loop.time()
        self._timer = loop.call_later(self._interval, self._tick)
        try:
            yield Event("metadata", json.dumps(self._metadata))
            while True:
                item: QueueItem | object = await self._queue.get()
                self._last_sent = loop.time()
                while isinstance(item, list):  # this batch, and every one already queued behind it
                    for chunk in item:
                        if chunk.content:
                            self._texts.append(chunk.content)
                    item = self._queue.get_nowait() if not self._queue.empty() else _NOTHING
                if self._texts:
                    yield self._data_event()
                elif item is KEEPALIVE_DUE:
                    yield KEEPALIVE_DUE
                if isinstance(item, Finished):
                    self.finished = True
                    if self._on_finished is not None:
                        await self._on_finished()
                    self.end = self._end_data(item.meta)
                    yield Event("end", json.dumps(self.end))
                    return
                if isinstance(item, Failed):
                    self.error = self._classify(item.error)
                    yield Event("error", json.dumps(error_data(self.error)))
                    return
        finally:
            self._timer.cancel()

    def _data_event(self) -> Event:
        if self.first_chunk_at is None:
            self.first_chunk_at = self._last_sent
        self.chunks += len(self._texts)
        text = self._texts[0] if len(self._texts) == 1 else "".join(self._texts)
        self._texts.clear()
        return Event("data", json_string(text))

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        idle = loop.time() - self._last_sent
        if idle >= self._interval * 0.99 and self._queue.empty():
            self._queue.put_nowait(KEEPALIVE_DUE)
            idle = 0.0
        self._timer = loop.call_later(max(self._interval - idle, 0.01), self._tick)

    def _end_data(self, meta: dict[str, Any]) -> dict[str, Any]:
        return {
            "finish_reason": meta.get("finish_reason"),
            "model": meta.get("model") or None,  # what the upstream said served it: not always what was asked for
            "usage": _plain(meta.get("usage")),
            "chunks": self.chunks,
        }


def error_data(error: RunError) -> dict[str, Any]:
    data: dict[str, Any] = {"type": error.type, "message": error.message, "retryable": error.retryable}
    if error.retry_after is not None:
        data["retry_after"] = error.retry_after
    return data


def _plain(usage: Any) -> dict[str, Any] | None:
    """Usage as the upstream sent it, as plain JSON.

    The SDK parses usage into pydantic models and Haystack dumps them with every declared field, so
    token details the upstream never sent come back as nulls, at any depth. They are dropped at every
    depth; an explicit null from the upstream cannot be told from an absent field by then, and goes too.
    Fields the SDK does not declare (a server's own, e.g. `queue_time`) are kept.
    """
    if not isinstance(usage, dict):
        return None
    plain = json.loads(json.dumps(usage, default=lambda obj: obj.model_dump() if hasattr(obj, "model_dump") else None))
    return _without_nulls(plain)


def _without_nulls(value: dict[str, Any]) -> dict[str, Any]:
    return {
        key: _without_nulls(item) if isinstance(item, dict) else item for key, item in value.items() if item is not None
    }
