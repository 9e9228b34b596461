"""Cross-origin access, for a browser page served from another origin: off unless origins are listed.

Only the origins (and whether credentials may be sent) are configured; the rest of the policy is
fixed here. A preflight may ask for POST, GET, DELETE and OPTIONS with the headers a chat client
sends: `content-type` (JSON is not a "simple" content type), `authorization` (the Bearer key), and
`last-event-id`, which is not CORS-safelisted and which fetch-event-source sends when it retries,
and `idempotency-key` (see the runs API). The response headers exposed to scripts are
`Retry-After`, so a page can honour a 503, and `Location` (POST /runs).

Starlette's `CORSMiddleware` is close, but it answers a disallowed origin's preflight with the
allowed methods and headers, and wraps `send` for every request, same-origin ones included. Here
a request from an origin that is not listed passes through untouched and gets no CORS headers at
all, and only an allowed cross-origin request has its `send` wrapped (once per response message).
"""

from collections.abc import Iterable

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.settings import Settings

ALLOW_METHODS = ("GET", "POST", "DELETE", "OPTIONS")
ALLOW_HEADERS = ("authorization", "content-type", "idempotency-key", "last-event-id")
EXPOSE_HEADERS = ("location", "retry-after")
MAX_AGE = 600  # seconds a browser may reuse a preflight's answer
# Browsers may list these in a preflight when their value is unusual; they are harmless to allow.
_SAFELISTED = frozenset({"accept", "accept-language", "content-language", "content-type"})

RawHeaders = list[tuple[bytes, bytes]]


def add_cors(app: FastAPI, settings: Settings) -> None:
    if settings.cors_origins:
        app.add_middleware(
            CrossOriginMiddleware, origins=settings.cors_origins, allow_credentials=settings.cors_allow_credentials
        )


class CrossOriginMiddleware:
    def __init__(self, app: ASGIApp, origins: Iterable[str], allow_credentials: bool = False) -> None:
        self.app = app
        self.origins = frozenset(origins)
        self.any_origin = "*" in self.origins
        if self.any_origin and allow_credentials:
            raise ValueError("a wildcard origin cannot be combined with credentials")
        self.allow_credentials = allow_credentials
        self._allowed_headers = _SAFELISTED | set(ALLOW_HEADERS)
        self._preflight_headers = {
            "access-control-allow-methods": ", ".join(ALLOW_METHODS),
            "access-control-allow-headers": ", ".join(ALLOW_HEADERS),
            "access-control-max-age": str(MAX_AGE),
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope) if scope["type"] == "http" else None
        origin = headers.get("origin") if headers is not None else None
        if headers is None or origin is None:
            await self.app(scope, receive, send)
            return
        preflight = scope["method"] == "OPTIONS" and "access-control-request-method" in headers
        if not (self.any_origin or origin in self.origins):
            if preflight:
                await _refused("origin")(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        if preflight:
            await self._preflight(headers, origin)(scope, receive, send)
            return
        extra = self._allow(origin)
        extra.append((b"access-control-expose-headers", ", ".join(EXPOSE_HEADERS).encode()))

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        await self.app(scope, receive, send_with_cors)

    def _preflight(self, headers: Headers, origin: str) -> Response:
        if headers["access-control-request-method"] not in ALLOW_METHODS:
            return _refused("method")
        requested = {name.strip().lower() for name in headers.get("access-control-request-headers", "").split(",")}
        if not requested - {""} <= self._allowed_headers:
            return _refused("headers")
        response = Response(status_code=204, headers=self._preflight_headers)
        response.raw_headers.extend(self._allow(origin))
        return response

    def _allow(self, origin: str) -> RawHeaders:
        if self.any_origin:
            return [(b"access-control-allow-origin", b"*")]
        headers = [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")]
        if self.allow_credentials:
            headers.append((b"access-control-allow-credentials", b"true"))
        return headers


def _refused(what: str) -> Response:
    """A preflight the policy does not allow: 400, and no CORS headers, so the browser blocks the request."""
    return PlainTextResponse(f"Disallowed CORS {what}", status_code=400, headers={"vary": "Origin"})
