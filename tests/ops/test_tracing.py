"""OpenTelemetry spans, exported to memory: the request, the run (GenAI conventions) and Haystack's
spans under it, a resumed read linked to its run, and never the key, the question or the answer
unless content tracing is switched on."""

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from service.app import create_app
from service.demo_model import Behaviour, DemoModelServer, expected_text
from service.ops.tracing import Tracing, tracing_requested
from tests.conftest import SettingsFactory
from tests.support.servers import asgi_client_for
from tests.support.sse import parse_sse

KEY = "sk-trace-SENTINEL-6e5d4c"
QUESTION = "Which spans does a traced run make?"
TOKENS = 5


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


Client = Callable[..., Any]


@pytest.fixture
def traced(make_settings: SettingsFactory, upstream_server: DemoModelServer, exporter: InMemorySpanExporter) -> Client:
    upstream_server.behaviour = Behaviour(tokens=TOKENS, first_token_delay=0.0, token_delay=0.0)

    @asynccontextmanager
    async def client(**overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
        settings = make_settings(base_url=upstream_server.base_url, model="demo", **overrides)
        tracing = Tracing.with_exporters([exporter], trace_content=settings.trace_content, batch=False)
        app = create_app(settings, tracing)
        async with app.router.lifespan_context(app), asgi_client_for(app) as http:
            yield http

    return client


def by_name(exporter: InMemorySpanExporter) -> dict[str, list[ReadableSpan]]:
    spans: dict[str, list[ReadableSpan]] = {}
    for span in exporter.get_finished_spans():
        spans.setdefault(span.name, []).append(span)
    return spans


def everything(exporter: InMemorySpanExporter) -> str:
    return "\n".join(span.to_json() for span in exporter.get_finished_spans())


async def ask(client: httpx.AsyncClient, **headers: str) -> httpx.Response:
    response = await client.post("/chat", json={"query": QUESTION, "api_key": KEY}, headers=headers)
    assert response.status_code == 200
    return response


async def test_a_run_is_a_genai_span_under_the_request_with_haystacks_spans_under_it(
    traced: Client, exporter: InMemorySpanExporter, upstream_server: DemoModelServer
) -> None:
    async with traced() as client:
        response = await ask(client)
    spans = by_name(exporter)
    (request,) = spans["POST /chat"]
    (run,) = spans["chat demo"]
    (pipeline,) = spans["haystack.async_pipeline.run"]
    components = spans["haystack.component.run"]
    assert run.parent is not None and run.parent.span_id == request.context.span_id
    assert pipeline.parent is not None and pipeline.parent.span_id == run.context.span_id
    assert {span.attributes["haystack.component.name"] for span in components} == {"prompt_builder", "llm"}  # type: ignore[index]
    assert all(span.parent is not None and span.parent.span_id == pipeline.context.span_id for span in components)
    attributes = dict(run.attributes or {})
    run_id = parse_sse(response.text).events[0].json()["run_id"]
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.request.model"] == "demo"
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert attributes["gen_ai.usage.output_tokens"] == TOKENS
    assert isinstance(attributes["gen_ai.usage.input_tokens"], int)
    assert attributes["haystream.run_id"] == run_id and attributes["haystream.outcome"] == "completed"
    (first_token,) = run.events
    assert first_token.name == "gen_ai.first_token"
    assert run.start_time is not None and run.end_time is not None
    assert run.start_time < first_token.timestamp <= run.end_time


async def test_no_span_per_streamed_chunk(traced: Client, exporter: InMemorySpanExporter) -> None:
    async with traced() as client:
        await ask(client)
    names = {span.name for span in exporter.get_finished_spans()}
    assert not any("send" in name or "receive" in name for name in names), names


async def test_no_span_holds_the_key_the_question_or_the_answer(
    traced: Client, exporter: InMemorySpanExporter, upstream_server: DemoModelServer
) -> None:
    async with traced() as client:
        await ask(client)
        body = {"model": "haystream-chat", "messages": [{"role": "user", "content": QUESTION}]}
        await client.post("/v1/chat/completions", json=body, headers={"authorization": f"Bearer {KEY}"})
    first, _ = upstream_server.wait_for_requests(2)
    exported = everything(exporter)
    assert len(by_name(exporter)["chat demo"]) == 2
    for secret in (KEY, QUESTION, expected_text(first.prompt, upstream_server.behaviour)):
        assert secret not in exported


async def test_content_tracing_is_an_explicit_opt_in_and_still_never_the_key(
    traced: Client, exporter: InMemorySpanExporter
) -> None:
    async with traced(trace_content=True) as client:
        await ask(client)
    (run,) = by_name(exporter)["chat demo"]
    attributes = dict(run.attributes or {})
    assert QUESTION in str(attributes["gen_ai.input.messages"])
    assert json.loads(str(attributes["gen_ai.output.messages"]))[0]["role"] == "assistant"
    assert QUESTION in everything(exporter).split('"haystack.component.input"', 1)[1]
    assert KEY not in everything(exporter)


async def test_a_resumed_read_links_to_its_runs_span(traced: Client, exporter: InMemorySpanExporter) -> None:
    async with traced() as client:
        first = await ask(client, **{"idempotency-key": "trace-1"})
        again = await ask(client, **{"idempotency-key": "trace-1"})
    assert parse_sse(again.text).events[0].id == parse_sse(first.text).events[0].id
    (run,) = by_name(exporter)["chat demo"]
    (read,) = by_name(exporter)["haystream.read"]
    assert [link.context.span_id for link in read.links] == [run.context.span_id]


@pytest.mark.parametrize(
    ("environ", "on"),
    [
        ({}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_SERVICE_NAME": "haystream"}, False),
    ],
)
def test_tracing_is_off_unless_the_standard_environment_asks(environ: dict[str, str], on: bool) -> None:
    assert tracing_requested(environ) is on
    assert Tracing.from_env(environ=environ).enabled is on


def test_the_otlp_exporter_reads_its_own_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "haystream-test")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:1/v1/traces")
    tracing = Tracing.from_env()
    assert tracing.provider is not None
    assert tracing.provider.resource.attributes["service.name"] == "haystream-test"
    processor = tracing.provider._active_span_processor._span_processors[0]
    assert processor._batch_processor._exporter._endpoint == "http://127.0.0.1:1/v1/traces"  # type: ignore[attr-defined]
    tracing.provider.shutdown()


async def test_a_failed_run_is_an_error_span_with_its_type(
    traced: Client, exporter: InMemorySpanExporter, upstream_server: DemoModelServer
) -> None:
    upstream_server.behaviour = Behaviour(fault="http_429")
    async with traced() as client:
        body = {"model": "haystream-chat", "messages": [{"role": "user", "content": QUESTION}], "stream": True}
        response = await client.post("/v1/chat/completions", json=body, headers={"authorization": f"Bearer {KEY}"})
    assert response.status_code == 429
    (run,) = by_name(exporter)["chat demo"]
    assert run.status.status_code is StatusCode.ERROR
    assert dict(run.attributes or {})["error.type"] == "rate_limited"
    assert KEY not in everything(exporter)
