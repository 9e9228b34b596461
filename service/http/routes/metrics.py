"""`GET /metrics` (and `HEAD`): the app's Prometheus metrics (see `service.ops.metrics`)."""

from fastapi import APIRouter, Request
from starlette.responses import Response

from service.http.deps import ServingDep

router = APIRouter()


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
@router.head("/metrics", include_in_schema=False)
async def metrics(request: Request, serving: ServingDep) -> Response:
    body, content_type = serving.metrics.render(request.headers.get("accept"))
    return Response(body, headers={"content-type": content_type})
