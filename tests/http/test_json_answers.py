"""`POST /chat` answered as one JSON object: same run machinery, errors as HTTP statuses."""

from typing import Any

import pytest

from service.demo_model import Behaviour, DemoModelServer, expected_text
from tests.conftest import LiveFactory
from tests.support.probes import raw_chat
from tests.support.waiting import wait_until

KEY = "sk-json-SENTINEL-9e44"
QUERY = "Answer me in one piece"
FAST: dict[str, Any] = {"first_token_delay": 0.0, "token_delay": 0.0}


@pytest.mark.parametrize(
    ("body", "headers"),
    [({}, {"Accept": "application/json"}), ({"stream": False}, {}), ({"stream": False}, {"Accept": "*/*"})],
)
def test_a_json_answer_holds_the_whole_text_and_its_end(
    live_service: LiveFactory, upstream_server: DemoModelServer, body: dict[str, Any], headers: dict[str, str]
) -> None:
    upstream_server.behaviour = Behaviour(**FAST)
    service = live_service()
    response = service.client.post("/chat", json={"query": QUERY, "api_key": KEY} | body, headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    answer = response.json()
    assert answer["answer"] == expected_text(QUERY, Behaviour(**FAST))
    assert answer["finish_reason"] == "stop"
    assert answer["usage"]["completion_tokens"] > 0
    assert answer["run_id"].startswith("run_") and answer["model"] == "demo"
    assert KEY not in response.text


def test_streaming_stays_the_default_and_stream_true_wins(live_service: LiveFactory) -> None:
    service = live_service()
    both = service.client.post(
        "/chat", json={"query": QUERY, "api_key": KEY}, headers={"Accept": "application/json, text/event-stream"}
    )
    assert both.headers["content-type"] == "text/event-stream"
    forced = service.client.post(
        "/chat", json={"query": QUERY, "api_key": KEY, "stream": True}, headers={"Accept": "application/json"}
    )
    assert forced.headers["content-type"] == "text/event-stream"


@pytest.mark.parametrize(
    ("header", "field"), [("Idempotency-Key", "idempotency-key"), ("Last-Event-ID", "last-event-id")]
)
def test_resuming_headers_are_refused_with_a_json_answer(live_service: LiveFactory, header: str, field: str) -> None:
    """A JSON answer is not held: a key that could not make a repeat attach must not pretend to."""
    service = live_service()
    body = {"query": QUERY, "api_key": KEY, "stream": False}
    response = service.client.post("/chat", json=body, headers={header: "run_x:1"})
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"field": field, "message": "applies to streamed answers only, not to a JSON answer"}
    ]
    assert service.state.admission.active == 0


@pytest.mark.parametrize(
    ("fault", "status", "error_type"),
    [
        ("http_401", 502, "upstream_auth"),
        ("http_404", 502, "upstream_rejected"),
        ("http_500", 502, "upstream_unavailable"),
        ("malformed", 502, "upstream_malformed"),
        ("http_429", 429, "rate_limited"),
    ],
)
def test_a_failed_run_is_an_http_status_with_the_typed_body(
    live_service: LiveFactory, upstream_server: DemoModelServer, fault: str, status: int, error_type: str
) -> None:
    upstream_server.behaviour = Behaviour(**FAST, tokens=5, fault=fault)
    service = live_service()
    response = service.client.post("/chat", json={"query": QUERY, "api_key": KEY, "stream": False})
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == error_type
    assert set(body) >= {"type", "message", "retryable", "run_id"}
    if error_type == "rate_limited":
        assert body["retryable"] is True
        assert int(response.headers["retry-after"]) >= 1


def test_an_upstream_timeout_is_a_504(live_service: LiveFactory, upstream_server: DemoModelServer) -> None:
    upstream_server.behaviour = Behaviour(**FAST, tokens=5, fault="stall_mid", fault_after=2)
    service = live_service(upstream_timeout=0.5)
    response = service.client.post(
        "/chat", json={"query": QUERY, "api_key": KEY}, headers={"Accept": "application/json"}
    )
    assert response.status_code == 504
    assert response.json()["type"] == "upstream_timeout" and response.json()["retryable"] is True


def test_a_json_client_leaving_cancels_the_run_and_closes_the_upstream(
    live_service: LiveFactory, upstream_server: DemoModelServer
) -> None:
    upstream_server.behaviour = Behaviour(token_delay=0.0, first_token_delay=60)
    service = live_service()
    sock = raw_chat(service.url, {"query": QUERY, "api_key": KEY, "stream": False})
    record = upstream_server.wait_for_requests(1)[0]
    sock.close()
    assert record.closed.wait(10), "the upstream connection stayed open after the client left"
    wait_until(lambda: service.state.admission.active == 0, 10, "the run to be released")
    assert record.client_gone and not record.completed


def test_a_json_answer_in_a_conversation_is_remembered(
    live_service: LiveFactory, upstream_server: DemoModelServer
) -> None:
    upstream_server.behaviour = Behaviour(**FAST)
    service = live_service()
    body = {"query": "One", "api_key": KEY, "conversation_id": "new", "stream": False}
    first = service.client.post("/chat", json=body)
    conversation_id = first.json()["conversation_id"]
    assert first.json()["history_turns"] == 0
    second = service.client.post(
        "/chat", json={"query": "Two", "api_key": KEY, "conversation_id": conversation_id, "stream": False}
    ).json()
    assert second["conversation_id"] == conversation_id and second["history_turns"] == 1
    assert f"assistant: {first.json()['answer']}" in upstream_server.requests[1].prompt
