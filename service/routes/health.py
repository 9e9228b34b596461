"""`GET /healthz` (the process answers) and `GET /readyz` (it will take new streams)."""

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.deps import StateDep

router = APIRouter()


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "Draining or not started."}})
async def readyz(state: StateDep) -> JSONResponse:
    if state.draining:
        return JSONResponse({"status": "draining"}, 503)
    return JSONResponse({"status": "ready", "active_streams": state.registry.active})
