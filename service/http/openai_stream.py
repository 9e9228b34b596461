"""`OpenAIStreamResponse`: a streamed completion whose status waits for the run's first answer.

OpenAI answers a refused key or a rate limit with an HTTP status before any chunk, and its SDKs
raise `AuthenticationError` or `RateLimitError` for it (and retry a 429 by its `Retry-After`). A
POST /chat stream starts at once, with its `metadata` event; this response holds that first
chunk (the role delta) back until the run sends its first text, ends, or its first keep-alive is
due (`keepalive_interval`), whichever comes first. A run that failed before any text then gets the
status JSON answers get (`OPENAI_STATUS_FOR_ERROR`) and OpenAI's error body, not a 200 stream;
otherwise the held-back chunk goes out with the first text, so the time to the first token is
unchanged. Only a new completion's first reader waits so; a resumed one streams at once.
"""

import json

from starlette.types import Send

from service.asks import Reader
from service.errors import RunError
from service.http.json_answer import OPENAI_STATUS_FOR_ERROR
from service.http.responses import EventStreamResponse
from service.http.send_watchdog import SendWatchdog
from service.streaming.openai_chunks import run_error_object
from service.streaming.sse import KEEPALIVE_FRAME


class OpenAIStreamResponse(EventStreamResponse):
    def __init__(self, reader: Reader, send_timeout: float | None, retry_after: int) -> None:
        super().__init__(reader.frames, reader.on_close, send_timeout)
        self.reader = reader
        self.retry_after = retry_after

    async def _stream(self, send: Send, progress: SendWatchdog) -> None:
        held_back: list[bytes] = []
        async for frames in self.body_iterator:
            held_back.append(frames)
            if frames is KEEPALIVE_FRAME or self.reader.opened():
                break
        error = self.reader.failed_early()
        if error is not None:
            await self._refuse(send, error)
            return
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        progress.sending = True
        await send({"type": "http.response.body", "body": b"".join(held_back), "more_body": True})
        progress.sending = False
        await self._send_body(send, progress)

    async def _refuse(self, send: Send, error: RunError) -> None:
        data: dict[str, object] = {"type": str(error.type), "message": error.message, "retryable": error.retryable}
        status = OPENAI_STATUS_FOR_ERROR.get(error.type, 500)
        headers = [(b"content-type", b"application/json")]
        if error.retry_after is not None:
            data["retry_after"] = error.retry_after
            headers.append((b"retry-after", str(max(1, round(error.retry_after))).encode()))
        elif status == 503:
            headers.append((b"retry-after", str(self.retry_after).encode()))
        body = json.dumps(run_error_object(data)).encode()
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})
