"""`POST /chat`: validate, admit, start a run, and stream it as Server-Sent Events (or, when the
client asks for JSON, answer with the whole result as one JSON object: same run, same events)."""

from typing import Annotated, Any

from fastapi import APIRouter, Header
from starlette.responses import Response

from service.errors import InvalidRequest
from service.http.deps import Authorization, IdempotencyKey, LastEventId, ServingDep
from service.http.json_answer import JSONAnswerResponse
from service.http.responses import EventStreamResponse, event_stream
from service.http.schemas import ChatRequest, ErrorBody, ask_of

router = APIRouter()

_STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {"description": "The answer as Server-Sent Events.", "content": {"text/event-stream": {}}},
    400: {"model": ErrorBody, "description": "The body is not valid JSON."},
    413: {"model": ErrorBody, "description": "The body is over HAYSTREAM_MAX_BODY_BYTES."},
    415: {"model": ErrorBody, "description": "The content-type is not application/json."},
    422: {"model": ErrorBody, "description": "A field is missing, of the wrong type or out of bounds."},
    429: {"model": ErrorBody, "description": "JSON answers only: the upstream is rate limiting."},
    502: {"model": ErrorBody, "description": "JSON answers only: the upstream failed or refused."},
    504: {
        "model": ErrorBody,
        "description": "JSON answers only: the upstream timed out (`upstream_timeout`), or the answer took longer "
        "than HAYSTREAM_RUN_MAX_DURATION (`run_timeout`).",
    },
    410: {
        "model": ErrorBody,
        "description": "Last-Event-ID names a run no longer held (`run_expired`), or events no longer held "
        "(`replay_unavailable`).",
    },
    503: {
        "model": ErrorBody,
        "description": "Every stream slot is taken, or the service is shutting down; retry after Retry-After seconds.",
    },
}


@router.post("/chat", response_class=EventStreamResponse, status_code=200, responses=_STREAM_DOC)
async def chat(
    body: ChatRequest,
    serving: ServingDep,
    authorization: Authorization = None,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
    idempotency_key: IdempotencyKey = None,
    last_event_id: LastEventId = None,
) -> Response:
    ask = ask_of(body, authorization)
    serving.check(ask)
    settings = serving.settings
    if not _streams(body, accept):  # a JSON answer is not held, so there is nothing to resume or attach to
        for header, value in (("last-event-id", last_event_id), ("idempotency-key", idempotency_key)):
            if value is not None:
                raise InvalidRequest(header, "applies to streamed answers only, not to a JSON answer")
        answering = await serving.answer(ask)
        return JSONAnswerResponse(answering.events, answering.on_close, settings.retry_after)
    if last_event_id is not None:  # a retry: resume the run this id belongs to, or say why not
        return event_stream(await serving.resume(ask, last_event_id), settings.send_timeout)
    if idempotency_key is not None and (held := await serving.find(ask, idempotency_key)) is not None:
        return event_stream(await serving.read(held, None), settings.send_timeout)
    grace = settings.resume_grace if idempotency_key is not None else settings.chat_resume_grace
    reader = await serving.stream(ask, idempotency_key=idempotency_key, grace=grace)
    return event_stream(reader, settings.send_timeout)


def _streams(body: ChatRequest, accept: str | None) -> bool:
    """`"stream"` decides when given; else an Accept that names JSON and not SSE asks for one JSON answer."""
    if body.stream is not None:
        return body.stream
    accept = (accept or "").lower()
    return "application/json" not in accept or "text/event-stream" in accept
