"""`ShedLoad`: refuse a new stream with 503 `at_capacity` before any work is spent on it.

A pure ASGI middleware in front of the routes that start runs (`POST /chat`, `POST /runs`,
`POST /v1/chat/completions`, where the 503 is in OpenAI's error shape). When
admission would refuse (`Admission.pressure`: every slot taken, or the event loop further behind
than `HAYSTREAM_MAX_LOOP_LAG_MS`), the client gets the same 503 as from `Serving` (same body,
`Retry-After`) without its body being read or parsed, without FastAPI's routing, dependencies or
validation, and without a pipeline being built: a few comparisons and one small JSON write. A
refusal is work done on the loop that is behind, so the less of it the sooner the refused client
hears: its cost here is one task step after the request's headers are parsed.

Why not only at the top of `Serving._admit`: by then the body has been buffered (`BodyLimit`) and
validated by pydantic, the dependencies resolved and the query checked: ~0.85 ms of CPU at one
client (`python -m bench.timeline`), a third of what a whole request costs (2.55 ms, bench/README.md),
paid by exactly the requests that are turned away while the loop has no time to spare. `Serving._admit` still checks
(`Admission.admit`), for the requests this lets through: a request carrying `Last-Event-ID` or
`Idempotency-Key` may attach to a run that is already streaming (a reconnect must never be refused
for pressure, or a running stream would be cut), and only `Serving` can tell whether it does.
"""

from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import CapacityExceeded
from service.http.errors import at_capacity

RUN_STARTING = frozenset({("POST", "/chat"), ("POST", "/runs"), ("POST", "/v1/chat/completions")})
ATTACHING = frozenset({b"last-event-id", b"idempotency-key"})


class ShedLoad:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (scope["method"], scope["path"]) in RUN_STARTING and not _attaches(scope):
            serving = scope["app"].state.serving
            try:
                serving.refuse_if_full()
            except CapacityExceeded as error:
                await at_capacity(error, serving.settings.retry_after, scope["path"])(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _attaches(scope: Scope) -> bool:
    """The request names an existing run (a resume, or an idempotent repeat) that it may attach to."""
    return any(name in ATTACHING for name, _ in scope["headers"])
