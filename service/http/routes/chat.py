"""`POST /chat`: validate, admit, start a run, and stream it as Server-Sent Events (or, when the
client asks for JSON, answer with the whole result as one JSON object: same run, same events)."""

from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse
from starlette.responses import Response

from service.answering.answers import check_pipeline, prepare
from service.errors import CapacityExceeded, InvalidRequest, classify
from service.http.deps import ServiceState, StateDep
from service.http.json_answer import JSONAnswerResponse
from service.http.responses import EventStreamResponse
from service.http.schemas import ChatRequest, ErrorBody, error_response, is_header_safe_key
from service.ops.logs import current_run_id
from service.settings import Settings
from service.streaming.collector import ChunkCollector
from service.streaming.event_log import EventLog
from service.streaming.held_run import HeldRun, owner_of
from service.streaming.run import Run

router = APIRouter()

MAX_IDEMPOTENCY_KEY_CHARS = 200
DEMO_NOTICE = "Answers come from the built-in demo model, not a real LLM."

_STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {"description": "The answer as Server-Sent Events.", "content": {"text/event-stream": {}}},
    400: {"model": ErrorBody, "description": "The body is not valid JSON."},
    413: {"model": ErrorBody, "description": "The body is over HAYSTREAM_MAX_BODY_BYTES."},
    415: {"model": ErrorBody, "description": "The content-type is not application/json."},
    422: {"model": ErrorBody, "description": "A field is missing, of the wrong type or out of bounds."},
    429: {"model": ErrorBody, "description": "JSON answers only: the upstream is rate limiting."},
    502: {"model": ErrorBody, "description": "JSON answers only: the upstream failed or refused."},
    504: {"model": ErrorBody, "description": "JSON answers only: the upstream timed out."},
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
    Header(alias="Last-Event-ID", max_length=200, description="Resume the run this event belongs to, after it."),
]


@router.post("/chat", response_class=EventStreamResponse, status_code=200, responses=_STREAM_DOC)
async def chat(
    body: ChatRequest,
    state: StateDep,
    authorization: Annotated[str | None, Header(description="`Bearer <key>`, if the body has no api_key.")] = None,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
    idempotency_key: IdempotencyKey = None,
    last_event_id: LastEventId = None,
) -> Response:
    settings = state.settings
    api_key = checked_key(body, authorization, settings)
    check_pipeline(state.answers, body.pipeline)
    streams = _streams(body, accept)
    if not streams:  # a JSON answer is not held, so there is nothing to resume or attach to
        for header, value in (("last-event-id", last_event_id), ("idempotency-key", idempotency_key)):
            if value is not None:
                raise InvalidRequest(header, "applies to streamed answers only, not to a JSON answer")
    owner = owner_of(api_key)
    if last_event_id is not None:  # a retry: resume the run this id belongs to, or say why not
        run_id = last_event_id.rpartition(":")[0]
        held = state.runs.get(run_id)
        if held is None or held.owner != owner:
            return run_gone()
        return read_run(state, held, last_event_id)
    if idempotency_key is not None and (held := state.runs.find(owner, idempotency_key)) is not None:
        return read_run(state, held, None)
    if not streams:  # one JSON answer: the same run, read here, not held for resuming
        admitted = await admit_run(state, api_key, body)
        if isinstance(admitted, JSONResponse):
            return admitted
        run, collector = admitted
        return JSONAnswerResponse(collector.events(), partial(run.close, collector), settings.retry_after)
    grace = settings.resume_grace if idempotency_key is not None else settings.chat_resume_grace
    started = await start_run(state, api_key, body, owner=owner, idempotency_key=idempotency_key, grace=grace)
    if isinstance(started, JSONResponse):
        return started
    response = read_run(state, started, None)  # attaches its reader first, so the grace does not start
    started.start()
    return response


def _streams(body: ChatRequest, accept: str | None) -> bool:
    """`"stream"` decides when given; else an Accept that names JSON and not SSE asks for one JSON answer."""
    if body.stream is not None:
        return body.stream
    accept = (accept or "").lower()
    return "application/json" not in accept or "text/event-stream" in accept


async def admit_run(state: ServiceState, api_key: str, body: ChatRequest) -> tuple[Run, ChunkCollector] | JSONResponse:
    """Admit and start a run and its collector; a JSONResponse (503) when it cannot be admitted."""
    settings = state.settings
    if state.draining:  # close the connection too: the retry should reach another instance
        return _unavailable(settings, "shutting_down", "The service is shutting down; retry shortly.", close=True)
    try:
        run = state.registry.admit()
    except CapacityExceeded:
        return _unavailable(settings, "at_capacity", "Every stream slot is taken; retry shortly.")
    current_run_id.set(run.id)
    try:
        answer = await prepare(state.answers, api_key, body.query, body.pipeline, body.conversation_id)
        run.start(answer.factory, answer.inputs)
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
    return run, collector


async def start_run(
    state: ServiceState, api_key: str, body: ChatRequest, *, owner: bytes, idempotency_key: str | None, grace: float
) -> HeldRun | JSONResponse:
    """Admit and start a run, held in the store for resuming; a JSONResponse (503) when it cannot be."""
    settings = state.settings
    try:
        if not state.draining:  # (admit_run answers a draining service's 503)
            state.runs.make_room()
    except CapacityExceeded:
        return _unavailable(settings, "at_capacity", "Every stream slot is taken; retry shortly.")
    admitted = await admit_run(state, api_key, body)
    if isinstance(admitted, JSONResponse):
        return admitted
    run, collector = admitted
    log = EventLog(
        run.id,
        max_events=settings.replay_max_events,
        max_bytes=settings.replay_max_bytes,
        window=settings.queue_size,
    )
    held = HeldRun(
        run,
        collector,
        log,
        owner=owner,
        idempotency_key=idempotency_key,
        grace=grace,
        max_duration=settings.run_max_duration,
        on_end=state.runs.ended,
    )
    try:
        state.runs.put(held)
    except CapacityExceeded:  # the store filled up with running runs while this one was being prepared
        run.cancel()
        return _unavailable(settings, "at_capacity", "Every stream slot is taken; retry shortly.")
    return held


def read_run(state: ServiceState, held: HeldRun, last_event_id: str | None) -> Response:
    """A response that streams `held`'s events after `last_event_id` (all of them when None)."""
    log = held.log
    try:
        position = log.parse_id(last_event_id)
    except ValueError:
        raise InvalidRequest("last-event-id", "is not an event id of this run") from None
    if position < log.first_held():
        message = "The events after Last-Event-ID are no longer held; start a new run."
        return error_response(410, "replay_unavailable", message)
    if log.closed and position >= log.next_seq:
        return Response(status_code=204)  # nothing more will come: tells EventSource to stop reconnecting
    current_run_id.set(held.id)
    held.attach()
    return EventStreamResponse(log.frames(position), on_close=held.detach, send_timeout=state.settings.send_timeout)


def run_gone() -> JSONResponse:
    message = "The run this Last-Event-ID belongs to is no longer held; start a new one."
    return error_response(410, "run_expired", message)


def checked_key(body: ChatRequest, authorization: str | None, settings: Settings) -> str:
    """What every route that starts a run checks beyond the schema; returns the caller's key."""
    if len(body.query) > settings.max_query_chars:
        raise InvalidRequest("query", f"must be at most {settings.max_query_chars} characters")
    return api_key_of(body, authorization)


def api_key_of(body: ChatRequest, authorization: str | None) -> str:
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
    headers = {"Retry-After": str(settings.retry_after)} | ({"Connection": "close"} if close else {})
    return error_response(503, error_type, message, retryable=True, headers=headers)
