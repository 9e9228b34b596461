"""The runs API: start a run (`POST /runs`), read it as SSE from any point (`GET /runs/{id}/events`,
readable by a browser's native `EventSource`), and stop it (`DELETE /runs/{id}`).

The run id is the capability to read or stop a run: it is unguessable (128 random bits) and the
API key never travels in a URL. See `service/streaming/held_run.py` for how long a run is kept.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.responses import Response

from service.answering.answers import check_pipeline
from service.http.deps import StateDep
from service.http.routes.chat import IdempotencyKey, checked_key, read_run, start_run
from service.http.schemas import ChatRequest, ErrorBody, error_response
from service.streaming.held_run import owner_of

router = APIRouter()


class RunCreated(BaseModel):
    run_id: str
    events_url: str


_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No such run, or it is no longer held (`run_not_found`)."}
}


@router.post(
    "/runs",
    status_code=201,
    response_model=RunCreated,
    responses={
        200: {"model": RunCreated, "description": "The Idempotency-Key's run, started earlier."},
        422: {"model": ErrorBody, "description": "As for POST /chat."},
        503: {"model": ErrorBody, "description": "As for POST /chat."},
    },
)
async def create_run(
    body: ChatRequest,
    state: StateDep,
    authorization: Annotated[str | None, Header(description="`Bearer <key>`, if the body has no api_key.")] = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    settings = state.settings
    api_key = checked_key(body, authorization, settings)
    check_pipeline(state.answers, body.pipeline)
    owner = owner_of(api_key)
    status = 200
    held = state.runs.find(owner, idempotency_key) if idempotency_key is not None else None
    if held is None:
        status = 201
        started = await start_run(
            state, api_key, body, owner=owner, idempotency_key=idempotency_key, grace=settings.resume_grace
        )
        if isinstance(started, JSONResponse):
            return started
        held = started
        held.start()
    url = f"/runs/{held.id}/events"
    created = RunCreated(run_id=held.id, events_url=url)
    return JSONResponse(created.model_dump(), status, headers={"Location": url})


@router.get("/runs/{run_id}/events", response_class=Response, responses=_NOT_FOUND)
async def run_events(
    run_id: str,
    state: StateDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=200)] = None,
) -> Response:
    held = state.runs.get(run_id)
    if held is None:
        return _not_found()
    return read_run(state, held, last_event_id)


@router.delete("/runs/{run_id}", status_code=204, responses=_NOT_FOUND)
async def stop_run(run_id: str, state: StateDep) -> Response:
    held = state.runs.get(run_id)
    if held is None:
        return _not_found()
    held.stop()
    return Response(status_code=204)


def _not_found() -> JSONResponse:
    return error_response(404, "run_not_found", "No such run, or it is no longer held.")
