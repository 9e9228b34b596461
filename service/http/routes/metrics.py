"""`GET /metrics`: the app's Prometheus metrics (see `service.ops.metrics`)."""

from fastapi import APIRouter, Request
from starlette.responses import Response

from service.http.deps import StateDep

router = APIRouter()


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics(request: Request, state: StateDep) -> Response:
    body, content_type = state.metrics.render(request.headers.get("accept"))
    return Response(body, headers={"content-type": content_type})
