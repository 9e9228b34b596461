"""What a request handler can depend on, as `Annotated` aliases."""

from typing import Annotated

from fastapi import Depends, Header, Request

from service.http.openai_schemas import bearer_key
from service.serving import Serving

MAX_IDEMPOTENCY_KEY_CHARS = 200
MAX_EVENT_ID_CHARS = 200


async def get_serving(request: Request) -> Serving:
    """Async on purpose: FastAPI runs a sync dependency on a worker thread, a thread hop per request."""
    serving: Serving = request.app.state.serving
    return serving


async def get_bearer_key(
    authorization: Annotated[str | None, Header(description="`Bearer <key>`: the caller's upstream key.")] = None,
) -> str:
    """A dependency, so a request without a key is refused (401) before its body is read."""
    return bearer_key(authorization)


ServingDep = Annotated[Serving, Depends(get_serving)]
BearerKey = Annotated[str, Depends(get_bearer_key)]

Authorization = Annotated[str | None, Header(description="`Bearer <key>`, if the body has no api_key.")]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=MAX_IDEMPOTENCY_KEY_CHARS,
        description="A client-chosen id per user action: a repeat with the same key (and API key) attaches "
        "to the run it started instead of starting another.",
    ),
]
LastEventId = Annotated[
    str | None,
    Header(
        alias="Last-Event-ID",
        max_length=MAX_EVENT_ID_CHARS,
        description="Resume the run this event belongs to, after it.",
    ),
]
