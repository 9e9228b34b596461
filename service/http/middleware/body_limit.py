"""`BodyLimit`: refuse a request body over `max_body_bytes` with 413, before it has been read whole.

A pure ASGI middleware, so it sees the body as it arrives: a `Content-Length` over the limit is
refused before a byte of the body is read, and a chunked upload is counted as it streams in and
refused the moment it passes the limit, while the client is still sending. The 413 says
`Connection: close`: the rest of an oversized upload is never read.

The body is buffered here (at most `max_body_bytes`) and handed to the app in one piece; FastAPI
reads a JSON body whole anyway. After that, `receive` is the server's own again, so the response
still hears `http.disconnect`. Counting in a wrapped `receive` instead would need the app to
stop reading on an exception, and FastAPI turns any exception raised while reading a body into
its own 400.
"""

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.http.responses import error_response


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left mid-upload: nobody to answer
                return
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(bytes(body), receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = f"must be at most {self.max_bytes} bytes"
        errors = [{"field": "body", "message": limit}]
        response = error_response(
            413, "body_too_large", f"body: {limit}", errors=errors, headers={"connection": "close"}
        )
        await response(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The buffered body as one message, then the server's own `receive` (for `http.disconnect`)."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
