"""`DELETE /runs/{id}`: stops a running run (its readers get `cancelled`, and it stays readable for
the retention, so a reader that reconnects learns how it ended); on a run that has ended (completed,
failed, or stopped by an earlier DELETE) it forgets it at once. 204 either way, 404 once forgotten."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from service.app import create_app
from service.demo_model import Behaviour, DemoModelServer
from service.serving import Serving
from tests.conftest import SettingsFactory
from tests.support.runs import local_run
from tests.support.servers import asgi_client_for
from tests.support.sse import parse_sse
from tests.support.waiting import until

BODY = {"query": "Forget me?", "api_key": "sk-delete"}
SHORT = Behaviour(tokens=3, first_token_delay=0, token_delay=0)
LONG = Behaviour(tokens=1000, first_token_delay=0, token_delay=0.05)


@pytest.fixture
def service(upstream_server: DemoModelServer, make_settings: SettingsFactory) -> Any:
    @asynccontextmanager
    async def start(behaviour: Behaviour) -> AsyncIterator[tuple[httpx.AsyncClient, Serving]]:
        upstream_server.behaviour = behaviour
        settings = make_settings(base_url=upstream_server.base_url, model="demo", resume_grace=30.0)
        app = create_app(settings)
        async with app.router.lifespan_context(app), asgi_client_for(app) as client:
            yield client, app.state.serving

    return start


async def ended(serving: Serving, run_id: str) -> None:
    held = await local_run(serving, run_id)
    await until(lambda: held.ended, message="the run to end")


async def test_delete_on_a_finished_run_forgets_it_and_its_idempotency_key(service: Any) -> None:
    """Regression: the DELETE answered 204 and the run stayed readable until its retention ran out."""
    headers = {"Idempotency-Key": "once"}
    async with service(SHORT) as (client, serving):
        run_id = (await client.post("/runs", json=BODY, headers=headers)).json()["run_id"]
        await ended(serving, run_id)
        assert parse_sse((await client.get(f"/runs/{run_id}/events")).text).events[-1].event == "end"
        assert (await client.delete(f"/runs/{run_id}")).status_code == 204
        gone = await client.get(f"/runs/{run_id}/events")
        assert gone.status_code == 404 and gone.json()["type"] == "run_not_found"
        again = await client.post("/runs", json=BODY, headers=headers)
        assert again.status_code == 201 and again.json()["run_id"] != run_id  # a new run, not the forgotten one
        assert (await client.delete(f"/runs/{run_id}")).status_code == 404


async def test_delete_stops_a_running_run_which_stays_readable_until_a_second_delete(service: Any) -> None:
    """Regression too: a DELETE right after POST /runs, before the run's event writer had first run,
    cancelled the writer before its `finally`, so the run never ended and was never forgotten."""
    async with service(LONG) as (client, serving):
        run_id = (await client.post("/runs", json=BODY)).json()["run_id"]
        assert (await client.delete(f"/runs/{run_id}")).status_code == 204
        await ended(serving, run_id)
        replay = parse_sse((await client.get(f"/runs/{run_id}/events")).text).events
        assert replay[-1].event == "error" and replay[-1].json()["type"] == "cancelled"
        assert (await client.delete(f"/runs/{run_id}")).status_code == 204
        assert (await client.get(f"/runs/{run_id}/events")).status_code == 404
