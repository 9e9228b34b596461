"""Admission by measured capacity: a loop that is behind refuses new streams, fast, and only new ones."""

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from service.answering.answers import prepare
from service.app import create_app
from service.demo_model import Behaviour, DemoModelServer, expected_text
from service.serving import Serving
from tests.conftest import SettingsFactory
from tests.support.servers import asgi_client_for
from tests.support.sse import parse_sse, text_of

KEY = "sk-capacity-SENTINEL-51aa"
QUERY = "Is there room for me?"
BODY = {"query": QUERY, "api_key": KEY}


@dataclass
class StubLag:
    seconds: float = 0.0


@pytest.fixture
def upstream() -> Iterator[DemoModelServer]:
    with DemoModelServer(behaviour=Behaviour(tokens=30, first_token_delay=0, token_delay=0.01)) as server:
        yield server


@pytest.fixture
async def app(make_settings: SettingsFactory, upstream: DemoModelServer) -> AsyncIterator[FastAPI]:
    app = create_app(make_settings(base_url=upstream.base_url, model="demo", max_loop_lag_ms=50, retry_after=7))
    async with app.router.lifespan_context(app):
        app.state.serving.admission.lag = StubLag()
        yield app


@pytest.fixture
def prepared(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The queries a pipeline was prepared (and then built) for."""
    calls: list[str] = []

    async def spy(context: Any, api_key: str, query: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(query)
        return await prepare(context, api_key, query, *args, **kwargs)

    monkeypatch.setattr("service.serving.prepare", spy)
    return calls


def behind(app: FastAPI, seconds: float = 0.2) -> Serving:
    serving: Serving = app.state.serving
    serving.admission.lag.seconds = seconds  # type: ignore[misc, union-attr]
    return serving


def assert_at_capacity(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "7"
    assert response.json()["type"] == "at_capacity" and response.json()["retryable"] is True


async def test_a_loop_behind_refuses_before_the_body_is_read_or_a_pipeline_built(
    app: FastAPI, prepared: list[str]
) -> None:
    behind(app)
    headers = {"content-type": "application/json"}
    async with asgi_client_for(app) as client:
        for path in ("/chat", "/runs"):
            assert_at_capacity(await client.post(path, content=b"{not json", headers=headers))  # never parsed
            assert_at_capacity(await client.post(path, json=BODY))
        # With an Idempotency-Key the request may attach to a running run, so the edge lets it through;
        # a new run is then refused by admission itself, still before any pipeline is prepared.
        assert_at_capacity(await client.post("/chat", json=BODY, headers={"idempotency-key": "k1"}))
    assert prepared == []


async def test_the_openai_endpoint_is_refused_before_its_body_is_read_in_openais_shape(
    app: FastAPI, prepared: list[str]
) -> None:
    behind(app)
    completion = {"model": "haystream-chat", "messages": [{"role": "user", "content": QUERY}], "stream": True}
    headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
    async with asgi_client_for(app) as client:
        for body in (b"{not json", json.dumps(completion).encode()):
            response = await client.post("/v1/chat/completions", content=body, headers=headers)
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"] == "7"
            error = response.json()["error"]  # what OpenAI's SDKs read: they retry a 503
            assert error["code"] == "at_capacity" and error["type"] == "server_error"
            assert KEY not in response.text
    assert prepared == []


async def test_a_loop_that_caught_up_admits_again(app: FastAPI, prepared: list[str]) -> None:
    behind(app)
    async with asgi_client_for(app) as client:
        assert_at_capacity(await client.post("/chat", json=BODY))
        behind(app, 0.001)
        answer = await client.post("/chat", json=BODY)
    assert answer.status_code == 200 and text_of(parse_sse(answer.text).events)
    assert prepared == [QUERY]


async def test_running_streams_and_their_readers_are_never_refused(app: FastAPI, upstream: DemoModelServer) -> None:
    async with asgi_client_for(app) as client:
        created = (await client.post("/runs", json=BODY)).json()
        behind(app)
        assert_at_capacity(await client.post("/runs", json=BODY))
        events = parse_sse((await client.get(created["events_url"])).text).events
        first = events[1].id
        resumed = await client.post("/chat", json=BODY, headers={"last-event-id": first or ""})
    assert events[-1].event == "end" and text_of(events) == expected_text(QUERY, upstream.behaviour)
    assert resumed.status_code in (200, 204), resumed.text  # read again after its first event, not refused
    assert len(upstream.wait_for_requests(1)) == 1


async def test_refusals_are_counted_by_reason_and_readiness_reports_the_pressure(app: FastAPI) -> None:
    serving = behind(app)
    async with asgi_client_for(app) as client:
        saturated = await client.get("/readyz")
        for _ in range(2):
            await client.post("/chat", json=BODY)
        behind(app, 0.0)
        serving.admission.max_streams = 0  # every slot taken
        await client.post("/chat", json=BODY)
        full = await client.get("/readyz")
        text = (await client.get("/metrics")).text
    assert saturated.status_code == 503
    assert saturated.json() | {"loop_lag_ms": None} == {
        "status": "saturated",
        "reason": "loop_lag",
        "active_streams": 0,
        "max_streams": serving.settings.max_streams,
        "loop_lag_ms": None,
        "max_loop_lag_ms": 50,
    }
    assert saturated.json()["loop_lag_ms"] == 200
    assert full.status_code == 503 and full.json()["reason"] == "slots"
    samples = {
        (sample.name, tuple(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert samples[("haystream_refusals_total", (("reason", "loop_lag"),))] == 2
    assert samples[("haystream_refusals_total", (("reason", "slots"),))] == 1
    assert samples[("haystream_streams_total", (("outcome", "rejected"),))] == 3
    assert samples[("haystream_loop_lag_seconds", ())] == 0.0
