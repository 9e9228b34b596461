"""A run's outcome says what ended it, the same in its last event, its `run ended` log line and the
metrics: `cancelled` for a DELETE, `run_timeout` for the maximum duration (a JSON answer's too)."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from service.app import create_app
from service.demo_model import Behaviour, DemoModelServer
from service.errors import ShuttingDown
from service.serving import Serving
from tests.conftest import SettingsFactory
from tests.support.runs import local_run
from tests.support.servers import asgi_client_for
from tests.support.sse import parse_sse
from tests.support.waiting import until

KEY = "sk-outcomes"
BODY = {"query": "How did it end?", "api_key": KEY}
LONG = Behaviour(tokens=1000, first_token_delay=0, token_delay=0.05)  # 50 s: ended by something else


@pytest.fixture
def service(upstream_server: DemoModelServer, make_settings: SettingsFactory) -> Any:
    @asynccontextmanager
    async def start(behaviour: Behaviour, **settings: Any) -> AsyncIterator[tuple[httpx.AsyncClient, Serving]]:
        upstream_server.behaviour = behaviour
        app = create_app(make_settings(**({"base_url": upstream_server.base_url, "model": "demo"} | settings)))
        async with app.router.lifespan_context(app), asgi_client_for(app) as client:
            yield client, app.state.serving

    return start


def ended_outcomes(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.__dict__["outcome"] for record in caplog.records if record.getMessage() == "run ended"]


def counted(metrics: str, line: str) -> bool:
    return f"{line} 1.0" in metrics.splitlines()


async def test_a_run_stopped_with_delete_is_cancelled_in_its_event_log_line_and_metrics(
    service: Any, upstream_server: DemoModelServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Regression: a DELETE was logged and counted as `client_gone`."""
    caplog.set_level(logging.INFO, logger="service.streaming.run")
    async with service(LONG, resume_grace=30.0) as (client, serving):
        run_id = (await client.post("/runs", json=BODY)).json()["run_id"]
        await until(lambda: upstream_server.requests, message="the upstream request")
        held = await local_run(serving, run_id)
        assert (await client.delete(f"/runs/{run_id}")).status_code in (200, 204)
        await until(lambda: held.ended, message="the run to end")
        events = parse_sse((await client.get(f"/runs/{run_id}/events")).text).events
        metrics = (await client.get("/metrics")).text
    assert events[-1].event == "error" and events[-1].json()["type"] == "cancelled"
    assert ended_outcomes(caplog) == ["cancelled"]
    assert counted(metrics, 'haystream_streams_total{outcome="cancelled"}')
    assert counted(metrics, 'haystream_streams_total{outcome="client_gone"}') is False


async def test_a_run_held_up_by_its_log_past_its_max_duration_ends_with_run_timeout(
    service: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Regression: a run whose answer was complete but whose log waited for a reader (nobody read it)
    got a `cancelled` event at its maximum duration, and was counted as `client_gone`."""
    caplog.set_level(logging.INFO, logger="service.streaming.run")
    one_token = Behaviour(tokens=1, first_token_delay=0, token_delay=0)
    async with service(one_token, run_max_duration=0.5, resume_grace=30.0, queue_size=2) as (client, serving):
        run_id = (await client.post("/runs", json=BODY)).json()["run_id"]
        held = await local_run(serving, run_id)
        await until(lambda: held.ended, within=10, message="the run to end at its maximum duration")
        events = parse_sse((await client.get(f"/runs/{run_id}/events")).text).events
        metrics = (await client.get("/metrics")).text
    assert [event.event for event in events] == ["metadata", "data", "error"]
    assert events[-1].json() == {
        "type": "run_timeout",
        "message": "The run went on longer than the service allows.",
        "retryable": False,
    }
    assert ended_outcomes(caplog) == ["error:run_timeout"]
    assert counted(metrics, 'haystream_stream_errors_total{type="run_timeout"}')


async def test_a_json_answer_past_the_max_duration_is_a_504_run_timeout(
    service: Any, upstream_server: DemoModelServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Regression: a JSON answer had no maximum duration at all."""
    caplog.set_level(logging.INFO, logger="service.streaming.run")
    async with service(LONG, run_max_duration=0.5) as (client, _):
        response = await client.post("/chat", json=BODY | {"stream": False}, timeout=10)
    assert response.status_code == 504
    assert response.json()["type"] == "run_timeout" and response.json()["retryable"] is False
    record = upstream_server.wait_for_requests(1)[0]
    assert record.closed.wait(5) and not record.completed
    assert ended_outcomes(caplog) == ["error:run_timeout"]


async def test_a_held_run_nobody_reads_ended_by_a_shutdown_says_shutting_down(
    service: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Regression: a run whose log was held up (nobody read it) when the drain ended it got `cancelled`
    at the teardown, and was counted as `client_gone`: what ended it first was the shutdown."""
    caplog.set_level(logging.INFO, logger="service.streaming.run")
    fast = Behaviour(tokens=1000, first_token_delay=0, token_delay=0)
    async with service(fast, resume_grace=30.0, queue_size=2) as (client, serving):
        held = await local_run(serving, (await client.post("/runs", json=BODY)).json()["run_id"])
        await until(lambda: held.log.next_seq >= 2, message="the log's window to fill")
        assert serving.admission.fail_all(ShuttingDown()) == 1  # what the drain does past its grace
    frames = [frame async for frame in held.log.frames(0)]  # the teardown ended the log
    last = parse_sse(b"".join(frames).decode()).events[-1]
    assert (last.event, last.json()["type"]) == ("error", "shutting_down")
    assert ended_outcomes(caplog) == ["error:shutting_down"]
