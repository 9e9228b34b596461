"""Liveness and readiness probes."""

import httpx
from fastapi import FastAPI

from service.app import create_app
from tests.conftest import SettingsFactory
from tests.support.servers import asgi_client_for


async def test_health_and_readiness(asgi_client: httpx.AsyncClient) -> None:
    assert (await asgi_client.get("/healthz")).json() == {"status": "ok"}
    ready = await asgi_client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


async def test_not_ready_while_draining(make_settings: SettingsFactory) -> None:
    app: FastAPI = create_app(make_settings())
    async with app.router.lifespan_context(app), asgi_client_for(app) as client:
        app.state.serving.draining = True
        response = await client.get("/readyz")
    assert response.status_code == 503 and response.json() == {"status": "draining", "active_streams": 0}


async def test_probes_and_metrics_answer_head_as_they_answer_get(asgi_client: httpx.AsyncClient) -> None:
    """Regression: HEAD /healthz, /readyz and /metrics were 405; load balancers and probes send HEAD."""
    for path in ("/healthz", "/readyz", "/metrics"):
        head, get = await asgi_client.head(path), await asgi_client.get(path)
        assert (head.status_code, head.headers["content-type"]) == (200, get.headers["content-type"]), path


async def test_head_readyz_says_503_while_draining(make_settings: SettingsFactory) -> None:
    app: FastAPI = create_app(make_settings())
    async with app.router.lifespan_context(app), asgi_client_for(app) as client:
        app.state.serving.draining = True
        assert (await client.head("/readyz")).status_code == 503
