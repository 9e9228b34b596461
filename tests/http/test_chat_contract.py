"""POST /chat at the OpenAI SDK's HTTP boundary (respx): streamed SSE bytes in, events out."""

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx

from service.app import create_app
from tests.conftest import UPSTREAM, SettingsFactory
from tests.support.servers import asgi_client_for
from tests.support.sse import SSEEvent, parse_sse

SECRET = "sk-test-SENTINEL-0123456789"


def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
    body = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "test-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(body)}\n\n"


def upstream_stream(texts: list[str], usage: dict[str, int] | None = None) -> bytes:
    frames = [chunk({"role": "assistant", "content": ""})]
    frames += [chunk({"content": text}) for text in texts]
    frames.append(chunk({}, finish="stop"))
    if usage is not None:
        body = {
            "id": "c1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [],
            "usage": usage,
        }
        frames.append(f"data: {json.dumps(body)}\n\n")
    frames.append("data: [DONE]\n\n")
    return "".join(frames).encode()


@pytest.fixture
def upstream() -> Iterator[respx.MockRouter]:
    """The upstream, mocked where the SDK's httpx client picks its transport; the test's own client passes."""
    with respx.mock(base_url=UPSTREAM, assert_all_called=False, using="httpx") as router:
        router.route(host="service.test").pass_through()
        yield router


def sse_response(content: bytes) -> httpx.Response:
    return httpx.Response(200, content=content, headers={"content-type": "text/event-stream"})


async def post_chat(client: httpx.AsyncClient, **body: Any) -> tuple[httpx.Response, list[SSEEvent]]:
    response = await client.post("/chat", json={"query": "hi", "api_key": SECRET} | body)
    return response, parse_sse(response.text).events


async def test_stream_becomes_metadata_data_end(asgi_client: httpx.AsyncClient, upstream: respx.MockRouter) -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    upstream.post("/chat/completions").mock(return_value=sse_response(upstream_stream(["Hel", "lo\nworld"], usage)))
    response, events = await post_chat(asgi_client)
    assert response.status_code == 200
    names = [e.event for e in events]
    assert names[0] == "metadata" and names[-1] == "end" and set(names[1:-1]) == {"data"}
    assert [int((e.id or ":-1").rpartition(":")[2]) for e in events] == list(range(len(events)))
    meta = events[0].json()
    assert meta["run_id"].startswith("run_") and meta["model"] == "test-model"
    # Chunks already waiting may share one event (see service/streaming/collector.py): the text is what counts.
    assert "".join(e.json() for e in events[1:-1]) == "Hello\nworld"
    assert events[-1].json() == {"finish_reason": "stop", "model": "m", "usage": usage, "chunks": 2}


async def test_response_headers(asgi_client: httpx.AsyncClient, upstream: respx.MockRouter) -> None:
    upstream.post("/chat/completions").mock(return_value=sse_response(upstream_stream(["x"])))
    response, _ = await post_chat(asgi_client)
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    assert "connection" not in response.headers


async def test_upstream_request_carries_the_key_and_the_literal_query(
    asgi_client: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    route = upstream.post("/chat/completions").mock(return_value=sse_response(upstream_stream(["x"])))
    await post_chat(asgi_client, query="What is {{ 7*7 }} and {% for x in y %}?")
    sent = route.calls.last.request
    assert sent.headers["authorization"] == f"Bearer {SECRET}"
    body = json.loads(sent.content)
    assert body["messages"] == [{"role": "user", "content": "What is {{ 7*7 }} and {% for x in y %}?"}]
    assert body["stream"] is True and body["model"] == "test-model"
    assert body["stream_options"] == {"include_usage": True}


async def test_bearer_header_is_used_when_the_body_has_no_key(
    asgi_client: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    route = upstream.post("/chat/completions").mock(return_value=sse_response(upstream_stream(["x"])))
    response = await asgi_client.post("/chat", json={"query": "hi"}, headers={"Authorization": "Bearer from-header"})
    assert response.status_code == 200
    assert route.calls.last.request.headers["authorization"] == "Bearer from-header"


async def test_the_body_key_wins_over_the_header(asgi_client: httpx.AsyncClient, upstream: respx.MockRouter) -> None:
    route = upstream.post("/chat/completions").mock(return_value=sse_response(upstream_stream(["x"])))
    response = await asgi_client.post(
        "/chat", json={"query": "hi", "api_key": "from-body"}, headers={"Authorization": "Bearer from-header"}
    )
    assert response.status_code == 200
    assert route.calls.last.request.headers["authorization"] == "Bearer from-body"


async def test_chunks_without_text_send_no_event(asgi_client: httpx.AsyncClient, upstream: respx.MockRouter) -> None:
    stream = upstream_stream(["a"]).replace(
        b"data: [DONE]", (chunk({}) + chunk({"content": "b"})).encode() + b"data: [DONE]"
    )
    upstream.post("/chat/completions").mock(return_value=sse_response(stream))
    _, events = await post_chat(asgi_client)
    assert "".join(e.json() for e in events if e.event == "data") == "ab"
    assert events[-1].json()["chunks"] == 2


@pytest.mark.parametrize(
    ("status", "error_type", "retryable"),
    [
        (401, "upstream_auth", False),
        (403, "upstream_auth", False),
        (404, "upstream_rejected", False),
        (429, "rate_limited", True),
        (500, "upstream_unavailable", True),
        (503, "upstream_unavailable", True),
    ],
)
async def test_upstream_status_becomes_a_typed_error_event(
    asgi_client: httpx.AsyncClient, upstream: respx.MockRouter, status: int, error_type: str, retryable: bool
) -> None:
    body = {"error": {"message": f"Incorrect API key provided: {SECRET}", "type": "x", "code": None}}
    upstream.post("/chat/completions").mock(return_value=httpx.Response(status, json=body))
    response, events = await post_chat(asgi_client)
    assert response.status_code == 200  # the stream had started: failures after that are events
    assert [e.event for e in events] == ["metadata", "error"]
    error = events[1].json()
    assert (error["type"], error["retryable"]) == (error_type, retryable)
    assert SECRET not in response.text


async def test_malformed_chunk_ends_with_an_error_after_the_text_so_far(
    asgi_client: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    stream = (chunk({"content": "ok"}) + "data: {not json\n\n").encode()
    upstream.post("/chat/completions").mock(return_value=sse_response(stream))
    _, events = await post_chat(asgi_client)
    assert [e.event for e in events] == ["metadata", "data", "error"]
    assert events[1].json() == "ok"  # the text before the failure is delivered first
    assert events[-1].json() == {
        "type": "upstream_malformed",
        "message": "The upstream sent a response we could not read.",
        "retryable": True,
    }


async def test_unreachable_upstream_is_a_retryable_error(
    asgi_client: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    upstream.post("/chat/completions").mock(side_effect=httpx.ConnectError("refused"))
    _, events = await post_chat(asgi_client)
    assert events[-1].event == "error"
    assert events[-1].json()["type"] == "upstream_unavailable"
    assert events[-1].json()["retryable"] is True


@pytest.mark.parametrize(("validate", "last_event"), [(True, "error"), (False, "end")])
async def test_chunk_validation_is_strict_only_when_asked(
    make_settings: SettingsFactory, upstream: respx.MockRouter, validate: bool, last_event: str
) -> None:
    """A server that differs from OpenAI's schema (here chunks typed "chat.completion") needs validate_chunks off."""
    frames = chunk({"content": "ok"}) + chunk({}, finish="stop") + "data: [DONE]\n\n"
    stream = frames.replace('"chat.completion.chunk"', '"chat.completion"').encode()
    upstream.post("/chat/completions").mock(return_value=sse_response(stream))
    app = create_app(make_settings(validate_chunks=validate))
    async with app.router.lifespan_context(app), asgi_client_for(app) as client:
        _, events = await post_chat(client)
    assert events[-1].event == last_event
    if last_event == "error":
        assert events[-1].json()["type"] == "upstream_malformed"


async def test_an_upstream_stream_with_no_chunk_at_all_is_incomplete(
    asgi_client: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    """Regression: Haystack fails joining zero chunks (IndexError), which surfaced as `internal`."""
    upstream.post("/chat/completions").mock(return_value=sse_response(b""))
    _, events = await post_chat(asgi_client)
    assert [e.event for e in events] == ["metadata", "error"]
    assert events[-1].json()["type"] == "upstream_unavailable"
    assert events[-1].json()["retryable"] is True


@pytest.mark.parametrize(
    ("field", "sent", "absent"),
    [
        (None, "max_completion_tokens", "max_tokens"),
        ("max_completion_tokens", "max_completion_tokens", "max_tokens"),
        ("max_tokens", "max_tokens", "max_completion_tokens"),
    ],
)
async def test_the_token_cap_goes_out_under_the_configured_field_only(
    make_settings: SettingsFactory, upstream: respx.MockRouter, field: str | None, sent: str, absent: str
) -> None:
    """Regression: the cap went out as `max_completion_tokens` only, which llama-cpp-python ignores."""
    route = upstream.post("/chat/completions").mock(return_value=sse_response(upstream_stream(["x"])))
    choice = {} if field is None else {"max_tokens_field": field}
    app = create_app(make_settings(max_completion_tokens=7, **choice))
    async with app.router.lifespan_context(app), asgi_client_for(app) as client:
        await post_chat(client)
    body = json.loads(route.calls.last.request.content)
    assert body[sent] == 7 and absent not in body


@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        {
            "prompt_tokens": 3,
            "completion_tokens": 2,
            "total_tokens": 5,
            "completion_tokens_details": {"reasoning_tokens": 1},
            "prompt_tokens_details": {},
        },
        {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5, "queue_time": 0.25},
    ],
)
@pytest.mark.parametrize("validate", [True, False])
async def test_end_usage_is_what_the_upstream_sent(
    make_settings: SettingsFactory, upstream: respx.MockRouter, usage: dict[str, Any], validate: bool
) -> None:
    """Regression: token details the upstream never sent appeared in `end.usage` as nulls."""
    upstream.post("/chat/completions").mock(return_value=sse_response(upstream_stream(["x"], usage)))
    app = create_app(make_settings(validate_chunks=validate))
    async with app.router.lifespan_context(app), asgi_client_for(app) as client:
        _, events = await post_chat(client)
    assert events[-1].json()["usage"] == usage


def served_by(model: str, texts: list[str]) -> bytes:
    """A stream whose every chunk names `model`, whatever the request asked for."""
    return upstream_stream(texts).replace(b'"model": "test-model"', f'"model": "{model}"'.encode())


@pytest.mark.parametrize("stream", [True, False])
async def test_the_answer_names_the_model_the_upstream_said_served_it(
    asgi_client: httpx.AsyncClient, upstream: respx.MockRouter, stream: bool
) -> None:
    """Regression: `metadata` and the JSON answer named HAYSTREAM_MODEL even when the upstream served another."""
    route = upstream.post("/chat/completions")
    route.mock(return_value=sse_response(served_by("gpt-4o-mini-2024-07-18", ["x"])))
    response, events = await post_chat(asgi_client, stream=stream)
    assert json.loads(route.calls.last.request.content)["model"] == "test-model"
    if stream:
        assert events[0].json()["model"] == "test-model"  # sent before the upstream answered: what was asked for
        assert events[-1].json()["model"] == "gpt-4o-mini-2024-07-18"
    else:
        assert response.json()["model"] == "gpt-4o-mini-2024-07-18"
