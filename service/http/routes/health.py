"""`GET /healthz` (the process answers) and `GET /readyz` (it will take new streams), and `HEAD` of
each (what many load balancers and probes send; the server leaves the body out). HEAD is left out of
the OpenAPI schema: one operation per path and method, and a HEAD of a GET says nothing new.

During a drain (service/ops/shutdown.py) the first stays 200 and the second says 503, so an
orchestrator stops routing here without restarting a process that is finishing its streams.

While admission would refuse a new stream (every slot taken, or the event loop behind its bound:
`Admission.pressure`), `/readyz` says 503 `"status": "saturated"` with the reason and the figures.
A status code, not only a field, because that is all most balancers read (Kubernetes readiness,
AWS target groups, HAProxy's and nginx's health checks): a replica that would answer the next
stream with a 503 anyway is taken out of rotation for new connections and put back once it
recovers, while its running streams carry on (readiness never cuts a connection, and `/healthz`
stays 200, so nothing restarts it). The smoothed lag (service/ops/loop_lag.py) keeps it from
flapping on a single stall. One caveat belongs to the operator: a balancer with every replica
saturated may have none left to route to (Kubernetes then has no endpoint; most cloud balancers
fail open to all), which the fast 503 of each refusal covers either way.
"""

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.http.deps import ServingDep

router = APIRouter()


@router.get("/healthz")
@router.head("/healthz", include_in_schema=False)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={
        503: {"description": "Shutting down, saturated, or the shared store is unreachable: no new streams now."}
    },
)
@router.head("/readyz", include_in_schema=False)
async def readyz(serving: ServingDep) -> JSONResponse:
    """Ready once the lifespan has started the pool (the app serves nothing before), until the drain."""
    admission = serving.admission
    active = admission.active
    if serving.draining:
        return JSONResponse({"status": "draining", "active_streams": active}, 503)
    if not serving.runs.available:
        return JSONResponse({"status": "store_unavailable", "active_streams": active}, 503)
    reason = admission.pressure()
    if reason is None:
        return JSONResponse({"status": "ready", "active_streams": active})
    lag_ms = round(admission.lag.seconds * 1000, 1) if admission.lag is not None else None
    return JSONResponse(
        {
            "status": "saturated",
            "reason": reason.value,
            "active_streams": active,
            "max_streams": admission.max_streams,
            "loop_lag_ms": lag_ms,
            "max_loop_lag_ms": serving.settings.max_loop_lag_ms,
        },
        503,
    )
