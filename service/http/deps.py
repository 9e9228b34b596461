"""What a request handler can depend on, as `Annotated` aliases."""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from service.answering.answers import Context
from service.ops.metrics import ServiceMetrics
from service.settings import Settings
from service.store.runs import RunStore
from service.streaming.run import RunRegistry
from service.streaming.threads import StreamPool


@dataclass
class ServiceState:
    """Built by the app's lifespan; lives as long as the app."""

    settings: Settings
    registry: RunRegistry
    pool: StreamPool
    answers: Context  # conversations, documents and the guard: what pipelines are built from
    runs: RunStore
    metrics: ServiceMetrics
    draining: bool = False  # set by the shutdown drain (service/ops/shutdown.py): no new streams, readyz 503


async def get_state(request: Request) -> ServiceState:
    """Async on purpose: FastAPI runs a sync dependency on a worker thread, a thread hop per request."""
    state: ServiceState = request.app.state.service
    return state


StateDep = Annotated[ServiceState, Depends(get_state)]
