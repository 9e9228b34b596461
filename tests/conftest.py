"""App and client fixtures. Settings are built per test and passed in; nothing global to patch."""

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from service.app import create_app
from service.settings import Settings

UPSTREAM = "http://upstream.test/v1"

SettingsFactory = Callable[..., Settings]


@pytest.fixture
def make_settings() -> SettingsFactory:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"base_url": UPSTREAM, "model": "test-model", "upstream_max_retries": 0}
        return Settings(**(values | overrides))

    return make


@pytest.fixture
async def asgi_client(make_settings: SettingsFactory) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process, lifespan run, no sockets: for contract tests at the SDK's HTTP boundary."""
    app = create_app(make_settings())
    async with app.router.lifespan_context(app), _client(app) as client:
        yield client


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service.test")
