"""App and client fixtures. Settings are built per test and passed in; nothing global to patch."""

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from service.app import create_app
from service.demo_model import Behaviour, DemoModelServer
from service.serving import Serving
from service.settings import Settings
from tests.support.redis_server import RedisServer
from tests.support.servers import asgi_client_for, run_server

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
    async with app.router.lifespan_context(app), asgi_client_for(app) as client:
        yield client


@pytest.fixture
def upstream_server() -> Iterator[DemoModelServer]:
    """A real local server speaking OpenAI's streaming protocol, fast by default."""
    server = DemoModelServer(behaviour=Behaviour(token_delay=0.005, first_token_delay=0.0))
    with server:
        yield server


@dataclass
class LiveService:
    url: str
    app: FastAPI
    client: httpx.Client

    @property
    def state(self) -> Serving:
        state: Serving = self.app.state.serving
        return state


LiveFactory = Callable[..., LiveService]


@pytest.fixture
def live_service(upstream_server: DemoModelServer, make_settings: SettingsFactory) -> Iterator[LiveFactory]:
    """Start the service under a real uvicorn, pointed at `upstream_server`; stopped after the test."""
    with ExitStack() as stack:

        def start(**overrides: Any) -> LiveService:
            app = create_app(make_settings(**({"base_url": upstream_server.base_url, "model": "demo"} | overrides)))
            url = stack.enter_context(run_server(app))
            client = stack.enter_context(httpx.Client(base_url=url, timeout=30))
            return LiveService(url, app, client)

        yield start


# Tests that start real servers or processes: everything under tests/external/, and any test elsewhere
# that takes a live server fixture. `pytest -m "not external"` is the fast inner loop.
EXTERNAL_FIXTURES = frozenset({"live_service", "upstream_server"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if "external" in item.path.parts or fixtures & EXTERNAL_FIXTURES:
            item.add_marker(pytest.mark.external)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the whole test run (skipped, or failed under CI, without the binary)."""
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The shared redis-server's URL, emptied first (FLUSHALL), so each test starts from nothing."""
    if not redis_server.running:
        redis_server.start()
    redis_server.command("FLUSHALL")
    return redis_server.url


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, which it may `stop()` and `start()` again (same port)."""
    with RedisServer(tmp_path) as server:
        yield server
