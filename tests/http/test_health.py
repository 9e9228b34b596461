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
