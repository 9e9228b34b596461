"""The runs API: start a run (`POST /runs`), read it as SSE from any point (`GET /runs/{id}/events`,
readable by a browser's native `EventSource`), and stop it (`DELETE /runs/{id}`: a running run is
stopped, and stays readable for the retention; one that has ended is forgotten; 204 either way).

The run id is the capability to read or stop a run: it is unguessable (128 random bits) and the
API key never travels in a URL. See `service/streaming/held_run.py` for how long a run is kept.
"""

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.responses import Response

from service.http.deps import Authorization, IdempotencyKey, LastEventId, ServingDep
from service.http.responses import event_stream
from service.http.schemas import ChatRequest, ErrorBody, ask_of

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
    serving: ServingDep,
    authorization: Authorization = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    ask = ask_of(body, authorization)
    serving.check(ask)
    held, created = await serving.start(ask, idempotency_key=idempotency_key)
    url = f"/runs/{held.id}/events"
    body_out = RunCreated(run_id=held.id, events_url=url)
    return JSONResponse(body_out.model_dump(), 201 if created else 200, headers={"Location": url})


@router.get("/runs/{run_id}/events", response_class=Response, responses=_NOT_FOUND)
async def run_events(run_id: str, serving: ServingDep, last_event_id: LastEventId = None) -> Response:
    reader = await serving.read(await serving.get(run_id), last_event_id)
    return event_stream(reader, serving.settings.send_timeout)


@router.delete("/runs/{run_id}", status_code=204, responses=_NOT_FOUND)
async def stop_run(run_id: str, serving: ServingDep) -> Response:
    """Stop a running run (its readers get a `cancelled` event, and it stays readable for the
    retention), or forget one that has ended, however it ended."""
    await serving.stop(run_id)
    return Response(status_code=204)
