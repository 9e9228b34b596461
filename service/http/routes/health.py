"""`GET /healthz` (the process answers) and `GET /readyz` (it will take new streams), and `HEAD` of
each (what many load balancers and probes send; the server leaves the body out). HEAD is left out of
the OpenAPI schema: one operation per path and method, and a HEAD of a GET says nothing new.

During a drain (service/ops/shutdown.py) the first stays 200 and the second says 503, so an
orchestrator stops routing here without restarting a process that is finishing its streams.
"""

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.http.deps import ServingDep

router = APIRouter()


@router.get("/healthz")
@router.head("/healthz", include_in_schema=False)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "Shutting down: no new streams are admitted."}})
@router.head("/readyz", include_in_schema=False)
async def readyz(serving: ServingDep) -> JSONResponse:
    """Ready once the lifespan has started the pool (the app serves nothing before), until the drain."""
    active = serving.admission.active
    if serving.draining:
        return JSONResponse({"status": "draining", "active_streams": active}, 503)
    return JSONResponse({"status": "ready", "active_streams": active})
