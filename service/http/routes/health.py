"""`GET /healthz` (the process answers) and `GET /readyz` (it will take new streams).

During a drain (service/ops/shutdown.py) the first stays 200 and the second says 503, so an
orchestrator stops routing here without restarting a process that is finishing its streams.
"""

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.http.deps import ServingDep

router = APIRouter()


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz", responses={503: {"description": "Shutting down, or the shared store is unreachable: no new streams."}}
)
async def readyz(serving: ServingDep) -> JSONResponse:
    """Ready once the lifespan has started the pool (the app serves nothing before), until the drain."""
    active = serving.admission.active
    if serving.draining:
        return JSONResponse({"status": "draining", "active_streams": active}, 503)
    if not serving.runs.available:
        return JSONResponse({"status": "store_unavailable", "active_streams": active}, 503)
    return JSONResponse({"status": "ready", "active_streams": active})
