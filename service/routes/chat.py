"""`POST /chat`: validate, admit, start a run, and stream it as Server-Sent Events (or, when the
client asks for JSON, answer with the whole result as one JSON object: same run, same events)."""

from collections.abc import AsyncGenerator, AsyncIterator
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse
from starlette.responses import Response

from service.answers import check_pipeline, prepare
from service.collector import ChunkCollector, StreamItem
from service.deps import StateDep
from service.errors import CapacityExceeded, InvalidRequest, classify
from service.json_answer import JSONAnswerResponse
from service.logs import current_run_id
from service.responses import EventStreamResponse
from service.schemas import ChatRequest, ErrorBody, is_header_safe_key
from service.settings import Settings
from service.sse import KEEPALIVE, encode

router = APIRouter()

DEMO_NOTICE = "Answers come from the built-in demo model, not a real LLM."

_STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The answer as Server-Sent Events, or one JSON object (Accept: application/json).",
        "content": {"text/event-stream": {}, "application/json": {}},
    },
    400: {"model": ErrorBody, "description": "The body is not valid JSON."},
    413: {"model": ErrorBody, "description": "The body is over HAYSTREAM_MAX_BODY_BYTES."},
    415: {"model": ErrorBody, "description": "The content-type is not application/json."},
    429: {"model": ErrorBody, "description": "JSON answers only: the upstream is rate limiting."},
    502: {"model": ErrorBody, "description": "JSON answers only: the upstream failed or refused."},
    504: {"model": ErrorBody, "description": "JSON answers only: the upstream timed out."},
    422: {"model": ErrorBody, "description": "A field is missing, of the wrong type or out of bounds."},
    503: {
        "model": ErrorBody,
        "description": "Every stream slot is taken, or the service is shutting down; retry after Retry-After seconds.",
    },
}


@router.post("/chat", response_class=EventStreamResponse, status_code=200, responses=_STREAM_DOC)
async def chat(
    body: ChatRequest,
    state: StateDep,
    authorization: Annotated[str | None, Header(description="`Bearer <key>`, if the body has no api_key.")] = None,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    settings = state.settings
    api_key = _api_key(body, authorization)
    if len(body.query) > settings.max_query_chars:
        raise InvalidRequest("query", f"must be at most {settings.max_query_chars} characters")
    check_pipeline(state.answers, body.pipeline)
    if state.draining:  # close the connection too: the retry should reach another instance
        return _unavailable(settings, "shutting_down", "The service is shutting down; retry shortly.", close=True)
    try:
        run = state.registry.admit()
    except CapacityExceeded:
        return _unavailable(settings, "at_capacity", "Every stream slot is taken; retry shortly.")
    current_run_id.set(run.id)
    try:
        answer = await prepare(state.answers, api_key, body.query, body.pipeline, body.conversation_id)
        run.start(answer.factory, body.query)
    except BaseException:
        state.registry.release(run)
        raise
    metadata: dict[str, Any] = {"run_id": run.id, "model": settings.model} | answer.metadata
    if settings.demo:
        metadata.update(demo=True, notice=DEMO_NOTICE)
    collector = ChunkCollector(
        run.queue,
        metadata=metadata,
        classify=classify,
        keepalive_interval=settings.keepalive_interval,
        on_finished=partial(answer.finished, run),
    )
    on_close = partial(run.close, collector)
    if not _streams(body, accept):
        return JSONAnswerResponse(collector.events(), on_close, settings.retry_after)
    return EventStreamResponse(_sse(collector.events()), on_close=on_close, send_timeout=settings.send_timeout)


def _streams(body: ChatRequest, accept: str | None) -> bool:
    """`"stream"` decides when given; else an Accept that names JSON and not SSE asks for one JSON answer."""
    if body.stream is not None:
        return body.stream
    accept = (accept or "").lower()
    return "application/json" not in accept or "text/event-stream" in accept


def _api_key(body: ChatRequest, authorization: str | None) -> str:
    """The body's key wins; otherwise a Bearer token; otherwise the request is refused."""
    if body.api_key is not None:
        return body.api_key.get_secret_value()
    if authorization:
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not is_header_safe_key(token):
            raise InvalidRequest("authorization", "must be 'Bearer <key>' with a printable ASCII key")
        return token
    raise InvalidRequest("api_key", "is required (in the body, or as an 'Authorization: Bearer' header)")


def _unavailable(settings: Settings, error_type: str, message: str, close: bool = False) -> JSONResponse:
    body = ErrorBody(type=error_type, message=message, retryable=True)
    headers = {"Retry-After": str(settings.retry_after)} | ({"Connection": "close"} if close else {})
    return JSONResponse(body.model_dump(exclude_none=True), 503, headers=headers)


async def _sse(items: AsyncIterator[StreamItem]) -> AsyncGenerator[bytes, None]:
    async for item in items:
        yield KEEPALIVE if item is None else encode(item)
