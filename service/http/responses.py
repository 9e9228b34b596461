"""`EventStreamResponse`: the SSE response, with the client's departure wired to the run.

Starlette's `StreamingResponse` only learns that a client left when its next write fails (ASGI
2.4 servers) and appends `; charset=utf-8` to `text/*` media types, which breaks the
`content-type === "text/event-stream"` check that fetch-event-source's README shows. This response
sends the exact header, and listens for `http.disconnect` while streaming, so a client that
leaves during a silent stretch (a slow first token, a stalled upstream) is noticed at once. A
client that stays connected but stops reading is dropped after `send_timeout` (`SendWatchdog`).
"""

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import TypeVar

from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from service.asks import Reader
from service.http.schemas import ErrorBody
from service.http.send_watchdog import SendWatchdog

T = TypeVar("T")

SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    # nginx buffers proxied responses unless told otherwise; this tells it, per response.
    (b"x-accel-buffering", b"no"),
]


class EventStreamResponse(Response):
    media_type = "text/event-stream"

    def __init__(
        self, body: AsyncGenerator[bytes, None], on_close: Callable[[], None], send_timeout: float | None = None
    ) -> None:
        self.status_code = 200
        self.background = None
        self.body_iterator = body
        self.on_close = on_close
        self.raw_headers = list(SSE_HEADERS)
        self.send_timeout = send_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        streamer: asyncio.Task[None] | None = None
        watchdog = SendWatchdog(self.send_timeout, lambda: streamer.cancel() if streamer is not None else None)
        streamer = asyncio.get_running_loop().create_task(self._stream(send, watchdog))
        watchdog.start()
        try:
            await until_disconnected(streamer, receive)
        finally:
            watchdog.stop()
            await self.body_iterator.aclose()
            self.on_close()

    async def _stream(self, send: Send, progress: SendWatchdog) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        await self._send_body(send, progress)

    async def _send_body(self, send: Send, progress: SendWatchdog) -> None:
        async for chunk in self.body_iterator:
            progress.sending = True
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            progress.sending = False
            progress.sent += 1
        progress.sending = True
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def event_stream(reader: Reader | None, send_timeout: float | None) -> Response:
    """The response for a reader of a run; 204 when nothing more will come (EventSource stops retrying)."""
    if reader is None:
        return Response(status_code=204)
    return EventStreamResponse(reader.frames, on_close=reader.on_close, send_timeout=send_timeout)


async def until_disconnected(work: "asyncio.Task[T]", receive: Receive) -> None:
    """Wait for `work` to end, or for the client to leave (`http.disconnect`), whichever comes first;
    then cancel whatever is still running. `work`'s result, if it finished, stays on the task."""
    watcher = asyncio.get_running_loop().create_task(_wait_for_disconnect(receive))
    try:
        await asyncio.wait((work, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (work, watcher):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await task


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def error_response(
    status: int,
    error_type: str,
    message: str,
    *,
    retryable: bool = False,
    errors: list[dict[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """An `ErrorBody` as the JSON response every refusal before a stream is."""
    body = ErrorBody(type=error_type, message=message, retryable=retryable, errors=errors or [])
    return JSONResponse(body.model_dump(), status, headers=headers)
