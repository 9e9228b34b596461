"""`JSONAnswerResponse`: a run's whole answer as one JSON object, for clients that do not stream.

It reads the same events an SSE client would get, from the same `ChunkCollector` over the same run:
there is one way to run a pipeline, and this is only another way to deliver its result. While the
answer is being collected it listens for `http.disconnect`, so a client that gives up still cancels
the run and closes the upstream response, exactly as with a stream. Its `model` is the one the
upstream said served the answer (`end.model`), else the one asked for.

A run that ends with `error` becomes an HTTP status with the same typed body as the `error` event
(`{"type", "message", "retryable"}`, + `retry_after`): every upstream failure is a 502 (the upstream,
not this request, failed; even `upstream_auth`, since a 401 would say the caller failed to
authenticate to this service), except `upstream_timeout` (504) and `rate_limited` (429, with
`Retry-After` when the upstream said how long); `shutting_down` is a 503 and `internal` a 500.
"""

import asyncio
import json
from collections.abc import AsyncGenerator, Callable
from typing import Any

from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from service.errors import ErrorType
from service.http.responses import until_disconnected
from service.streaming.collector import StreamItem

STATUS_FOR_ERROR: dict[str, int] = {
    ErrorType.UPSTREAM_AUTH: 502,
    ErrorType.UPSTREAM_REJECTED: 502,
    ErrorType.UPSTREAM_UNAVAILABLE: 502,
    ErrorType.UPSTREAM_MALFORMED: 502,
    ErrorType.UPSTREAM_TIMEOUT: 504,
    ErrorType.RATE_LIMITED: 429,
    ErrorType.SHUTTING_DOWN: 503,
    ErrorType.INTERNAL: 500,
}


class JSONAnswerResponse(Response):
    def __init__(
        self, events: AsyncGenerator[StreamItem, None], on_close: Callable[[], None], retry_after: int
    ) -> None:
        self.events = events
        self.on_close = on_close
        self.retry_after = retry_after
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        collector = asyncio.get_running_loop().create_task(self._collect())
        try:
            await until_disconnected(collector, receive)
        finally:
            await self.events.aclose()
            self.on_close()  # before answering: a completed turn is remembered by the time the client reads it
        if collector.done() and not collector.cancelled():
            await collector.result()(scope, receive, send)

    async def _collect(self) -> JSONResponse:
        answer: dict[str, Any] = {}
        texts: list[str] = []
        async for item in self.events:
            if item is None:
                continue  # a keep-alive: nothing to send to a client that waits for the whole answer
            data = json.loads(item.data)
            if item.name == "metadata":
                answer.update(data)
            elif item.name == "data":
                texts.append(data)
            elif item.name == "end":
                answer.update(answer="".join(texts), finish_reason=data["finish_reason"], usage=data["usage"])
                answer["model"] = data["model"] or answer.get("model")  # the upstream's, when it named one
                return JSONResponse(answer)
            elif item.name == "error":
                return self._failure(data | {"run_id": answer.get("run_id")})
        raise RuntimeError("the run's events ended without `end` or `error`")

    def _failure(self, error: dict[str, Any]) -> JSONResponse:
        status = STATUS_FOR_ERROR.get(error["type"], 500)
        headers: dict[str, str] = {}
        if error.get("retry_after") is not None:
            headers["Retry-After"] = str(max(1, round(error["retry_after"])))
        elif status == 503:
            headers["Retry-After"] = str(self.retry_after)
        return JSONResponse(error, status, headers=headers)
