"""/v1/chat/completions' raw bytes with plain httpx, and resuming a completion with Last-Event-ID or
Idempotency-Key: the same completion continues, with no second generation."""

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.demo_model import Behaviour, DemoModelServer, expected_text
from tests.conftest import LiveFactory, LiveService
from tests.support.sse import SSEEvent, parse_sse
from tests.support.streams import LiveStream
from tests.support.waiting import wait_until

KEY = "sk-wire-SENTINEL-93ad0f"
AUTH = {"authorization": f"Bearer {KEY}"}
BODY: dict[str, Any] = {
    "model": "haystream-chat",
    "messages": [{"role": "user", "content": "Can I resume a completion?"}],
    "stream": True,
}
URL = "/v1/chat/completions"
SAMPLE = Path(__file__).resolve().parents[2] / "pipelines" / "sample_docs"


@pytest.fixture
def service(live_service: LiveFactory, upstream_server: DemoModelServer) -> LiveService:
    upstream_server.behaviour = Behaviour(tokens=12, first_token_delay=0.0, token_delay=0.02)
    return live_service()


def text_of(events: list[SSEEvent]) -> str:
    chunks = [json.loads(event.data) for event in events if event.data != "[DONE]"]
    return "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks if chunk["choices"])


def test_the_raw_stream_is_openais_chunks_each_with_an_id(
    service: LiveService, upstream_server: DemoModelServer
) -> None:
    response = service.client.post(URL, json=BODY | {"stream_options": {"include_usage": True}}, headers=AUTH)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert KEY not in response.text
    assert "event:" not in response.text  # OpenAI's stream has unnamed events only
    assert response.text.endswith("data: [DONE]\n\n")
    events = parse_sse(response.text).events
    numbers = [int((event.id or "").rpartition(":")[2]) for event in events]
    assert numbers == sorted(numbers) and numbers[0] == 0
    assert {(event.id or "").rpartition(":")[0] for event in events} == {(events[0].id or "").rpartition(":")[0]}
    first, *_, finish, usage, done = events
    assert json.loads(first.data)["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert json.loads(finish.data)["choices"][0]["finish_reason"] == "stop"
    assert json.loads(usage.data)["choices"] == [] and json.loads(usage.data)["usage"]["completion_tokens"] == 12
    assert done.data == "[DONE]"
    (record,) = upstream_server.wait_for_requests(1)
    assert text_of(events) == expected_text(record.prompt, upstream_server.behaviour)


def test_last_event_id_continues_the_same_completion_without_a_second_generation(
    service: LiveService, upstream_server: DemoModelServer
) -> None:
    headers = AUTH | {"idempotency-key": "resume-1"}  # a key: the run waits for its reader to come back
    with LiveStream(service.client, BODY, headers, url=URL) as first:
        seen = [first.next_event() for _ in range(4)]
    before = [event for event in seen if event is not None]
    last_id = before[-1].id
    assert last_id is not None
    resumed = service.client.post(URL, json=BODY, headers=headers | {"last-event-id": last_id})
    assert resumed.status_code == 200
    after = parse_sse(resumed.text).events
    assert int((after[0].id or "").rpartition(":")[2]) == int(last_id.rpartition(":")[2]) + 1
    ids = {json.loads(event.data)["id"] for event in before + after if event.data != "[DONE]"}
    assert len(ids) == 1, "one completion id across the reconnect"
    (record,) = upstream_server.wait_for_requests(1)
    assert text_of(before + after) == expected_text(record.prompt, upstream_server.behaviour)
    assert len(upstream_server.requests) == 1


def test_the_same_idempotency_key_attaches_to_the_running_completion(
    service: LiveService, upstream_server: DemoModelServer
) -> None:
    headers = AUTH | {"idempotency-key": "attach-1"}
    with LiveStream(service.client, BODY, headers, url=URL) as first:
        assert first.next_event() is not None
        again = service.client.post(URL, json=BODY, headers=headers)
        rest = first.rest()
    events = parse_sse(again.text).events
    assert events[0].id == f"{(rest[0].id or '').rpartition(':')[0]}:0"
    (record,) = upstream_server.wait_for_requests(1)
    assert text_of(events) == expected_text(record.prompt, upstream_server.behaviour)
    assert len(upstream_server.requests) == 1


def test_a_post_chat_event_id_is_refused_on_the_openai_endpoint(service: LiveService) -> None:
    chat = service.client.post("/chat", json={"query": "hi"}, headers=AUTH | {"idempotency-key": "other"})
    last_id = parse_sse(chat.text).events[-1].id
    assert last_id is not None
    response = service.client.post(URL, json=BODY, headers=AUTH | {"last-event-id": last_id})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "last-event-id"
    again = service.client.post(URL, json=BODY, headers=AUTH | {"idempotency-key": "other"})
    assert again.status_code == 400 and again.json()["error"]["param"] == "idempotency-key"


def test_a_malformed_body_is_a_400_in_openais_shape(service: LiveService) -> None:
    for body in ({"model": "haystream-chat"}, {"model": "haystream-chat", "messages": []}):
        response = service.client.post(URL, json=body, headers=AUTH)
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error" and error["param"] == "messages"
    assert KEY not in httpx.post(service.url + URL, content=b"{", headers=AUTH).text


def test_a_slow_first_token_still_gets_the_status_and_role_by_the_first_keepalive(
    live_service: LiveFactory, upstream_server: DemoModelServer
) -> None:
    """The response waits for the first token to choose its status, but no longer than a keep-alive."""
    upstream_server.behaviour = Behaviour(tokens=3, first_token_delay=30, token_delay=0)
    service = live_service(keepalive_interval=0.2)
    with LiveStream(service.client, BODY, AUTH, url=URL) as stream:
        assert stream.response.status_code == 200
        first = stream.next_event()
        assert first is not None and json.loads(first.data)["choices"][0]["delta"]["role"] == "assistant"
        (record,) = upstream_server.wait_for_requests(1)
        assert record.tokens_sent == 0
        assert stream.parser.comments == ["keep-alive"]


def test_a_client_leaving_mid_stream_closes_the_upstream(
    live_service: LiveFactory, upstream_server: DemoModelServer
) -> None:
    upstream_server.behaviour = Behaviour(tokens=200, first_token_delay=0, token_delay=0.05)
    service = live_service()
    stream = LiveStream(service.client, BODY, AUTH, url=URL)
    assert all(stream.next_event() is not None for _ in range(3))
    stream.close()
    (record,) = upstream_server.wait_for_requests(1)
    assert record.closed.wait(5), "the upstream connection stayed open after the client left"
    assert record.client_gone and record.tokens_sent < 100
    wait_until(lambda: service.state.admission.active == 0, message="the run to be released")


def test_a_client_leaving_before_the_first_token_cancels_the_run(
    live_service: LiveFactory, upstream_server: DemoModelServer
) -> None:
    """While the status waits for the first token, a client that gives up still cancels the run."""
    upstream_server.behaviour = Behaviour(tokens=3, first_token_delay=30, token_delay=0)
    service = live_service()
    with pytest.raises(httpx.ReadTimeout):
        service.client.post(URL, json=BODY, headers=AUTH, timeout=httpx.Timeout(5, read=0.5))
    (record,) = upstream_server.wait_for_requests(1)
    assert record.closed.wait(5) and record.tokens_sent == 0
    wait_until(lambda: service.state.admission.active == 0, message="the run to be released")


def test_the_documents_model_answers_from_the_documents(
    live_service: LiveFactory, upstream_server: DemoModelServer
) -> None:
    upstream_server.behaviour = Behaviour(tokens=3, first_token_delay=0.0, token_delay=0.0)
    service = live_service(documents_dir=SAMPLE)
    body = {
        "model": "haystream-documents",
        "messages": [{"role": "user", "content": "How often should I feed my sourdough starter?"}],
    }
    response = service.client.post("/v1/chat/completions", json=body, headers=AUTH)
    assert response.status_code == 200 and response.json()["object"] == "chat.completion"
    (record,) = upstream_server.wait_for_requests(1)
    assert "--- sourdough.md ---" in record.prompt
