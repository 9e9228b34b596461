"""The whole path for real: uvicorn on a loopback port, the OpenAI SDK, a local OpenAI-protocol server."""

import json
import logging
from concurrent.futures import ThreadPoolExecutor

import pytest

from service.demo_model import Behaviour, DemoModelServer, expected_text
from tests.conftest import LiveFactory
from tests.support.servers import refused_port
from tests.support.sse import parse_sse, text_of
from tests.support.streams import LiveStream
from tests.support.waiting import wait_until

KEY = "sk-live-SENTINEL-5f1c2e"


def body(query: str = "What is streaming?", key: str = KEY) -> dict[str, str]:
    return {"query": query, "api_key": key}


def test_events_in_order_with_ids_and_the_exact_text(
    live_service: LiveFactory, upstream_server: DemoModelServer
) -> None:
    service = live_service()
    response = service.client.post("/chat", json=body())
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert "connection" not in response.headers
    events = parse_sse(response.text).events
    names = [e.event for e in events]
    assert names[0] == "metadata" and names[-1] == "end" and set(names[1:-1]) == {"data"}
    ids = [int((e.id or ":-1").rpartition(":")[2]) for e in events]
    assert ids == sorted(set(ids)), "ids must increase"
    assert text_of(events) == expected_text("What is streaming?", upstream_server.behaviour)
    assert events[-1].json()["chunks"] == len(events) - 2
    assert events[-1].json()["finish_reason"] == "stop"
    assert events[-1].json()["usage"]["completion_tokens"] > 0


SEPARATED = ("one\u2028two", "\u2029three", "\x85four")  # the line separators str.splitlines knows beyond CR/LF


def test_an_answer_with_unicode_line_separators_survives_a_splitlines_reader(
    live_service: LiveFactory, upstream_server: DemoModelServer
) -> None:
    """Regression: U+2028 went out raw in `data:`, and httpx's `iter_lines` (like requests') split there."""
    upstream_server.behaviour = Behaviour(answer=SEPARATED, first_token_delay=0.0, token_delay=0.0)
    service = live_service()
    with service.client.stream("POST", "/chat", json=body()) as response:
        lines = list(response.iter_lines())
    data = [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]
    events = [json.loads(payload) for payload in data]  # every data line is whole JSON
    assert "".join(event for event in events if isinstance(event, str)) == "".join(SEPARATED)


def test_metadata_is_sent_before_the_upstream_answers(
    live_service: LiveFactory, upstream_server: DemoModelServer
) -> None:
    upstream_server.behaviour = Behaviour(first_token_delay=30, token_delay=0)
    service = live_service()
    with LiveStream(service.client, body()) as stream:
        first = stream.next_event()
        assert first is not None and first.event == "metadata"
        assert first.json()["run_id"].startswith("run_")
        (record,) = upstream_server.wait_for_requests(1)
        assert record.tokens_sent == 0


def test_keepalive_comments_cover_a_slow_first_token(
    live_service: LiveFactory, upstream_server: DemoModelServer
) -> None:
    upstream_server.behaviour = Behaviour(tokens=3, first_token_delay=0.8, token_delay=0)
    service = live_service(keepalive_interval=0.2)
    with LiveStream(service.client, body()) as stream:
        stream.rest()
        log = stream.parser.log
    first_data = log.index("event:data")
    assert log[0] == "event:metadata"
    assert "comment:keep-alive" in log[1:first_data], log
    assert log[-1] == "event:end"


def test_client_leaving_mid_stream_closes_the_upstream_and_frees_the_thread(
    live_service: LiveFactory, upstream_server: DemoModelServer
) -> None:
    total = 200  # 10 s of tokens
    upstream_server.behaviour = Behaviour(tokens=total, first_token_delay=0, token_delay=0.05)
    service = live_service()
    stream = LiveStream(service.client, body())
    events = [stream.next_event() for _ in range(4)]  # metadata and three chunks
    assert [e.event for e in events if e] == ["metadata", "data", "data", "data"]
    stream.close()
    (record,) = upstream_server.wait_for_requests(1)
    assert record.closed.wait(5), "the upstream connection stayed open after the client left"
    assert record.client_gone and not record.completed
    assert record.tokens_sent < total // 2, f"{record.tokens_sent} of {total} tokens: stopped late"
    wait_until(lambda: service.state.threads.busy == 0, message="the pool's busy count to return to zero")
    wait_until(lambda: service.state.admission.active == 0, message="the run to be released")


def test_client_leaving_during_a_slow_first_token_closes_the_upstream(
    live_service: LiveFactory, upstream_server: DemoModelServer
) -> None:
    upstream_server.behaviour = Behaviour(first_token_delay=60, token_delay=0)
    service = live_service()
    stream = LiveStream(service.client, body())
    assert (first := stream.next_event()) is not None and first.event == "metadata"
    (record,) = upstream_server.wait_for_requests(1)
    stream.close()
    assert record.closed.wait(2), "a stalled upstream kept its connection after the client left"
    assert record.client_gone and record.tokens_sent == 0
    wait_until(lambda: service.state.threads.busy == 0, message="the pool's busy count to return to zero")


def test_a_full_pool_answers_503_at_once_and_recovers(
    live_service: LiveFactory, upstream_server: DemoModelServer
) -> None:
    upstream_server.behaviour = Behaviour(first_token_delay=60, token_delay=0)
    service = live_service(max_streams=2, retry_after=3)
    streams = [LiveStream(service.client, body()) for _ in range(2)]
    for stream in streams:
        assert (event := stream.next_event()) is not None and event.event == "metadata"
    refused = service.client.post("/chat", json=body())
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "3"
    assert refused.json()["type"] == "at_capacity" and refused.json()["retryable"] is True
    for stream in streams:
        stream.close()
    wait_until(lambda: service.state.admission.active == 0, message="both runs to be released")
    upstream_server.behaviour = Behaviour(tokens=2, first_token_delay=0, token_delay=0)
    assert service.client.post("/chat", json=body()).status_code == 200


def test_concurrent_requests_each_reach_the_upstream_with_their_own_key(
    live_service: LiveFactory, upstream_server: DemoModelServer
) -> None:
    upstream_server.behaviour = Behaviour(tokens=5, first_token_delay=0.05, token_delay=0.01)
    service = live_service()
    count = 40

    def ask(n: int) -> str:
        response = service.client.post("/chat", json=body(query=f"question {n}", key=f"sk-caller-{n}"))
        return text_of(parse_sse(response.text).events)

    with ThreadPoolExecutor(count) as pool:
        answers = list(pool.map(ask, range(count)))
    assert answers == [expected_text(f"question {n}", upstream_server.behaviour) for n in range(count)]
    records = upstream_server.wait_for_requests(count)
    assert len(records) == count
    for record in records:
        assert record.api_key == "sk-caller-" + record.prompt.removeprefix("question ")


def test_the_key_never_reaches_the_logs(
    live_service: LiveFactory, upstream_server: DemoModelServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    service = live_service()
    ok = service.client.post("/chat", json=body())
    upstream_server.behaviour = Behaviour(fault="http_401")  # its error message quotes the key back
    refused = service.client.post("/chat", json=body())
    error = parse_sse(refused.text).events[-1]
    assert error.event == "error" and error.json()["type"] == "upstream_auth"
    assert KEY not in ok.text + refused.text

    def run_lines() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.getMessage() == "run ended"]

    # The line is written when the response closes, which can be just after the client has read it all.
    wait_until(lambda: len(run_lines()) == 2, message="both runs' closing log lines")
    assert all(r.run_id.startswith("run_") for r in run_lines())  # type: ignore[attr-defined]
    assert {r.outcome for r in run_lines()} == {"completed", "error:upstream_auth"}  # type: ignore[attr-defined]
    assert caplog.records, "nothing was captured: the test would pass vacuously"
    assert KEY not in caplog.text
    assert all(KEY not in repr(vars(record)) for record in caplog.records)


def test_bad_input_over_a_real_socket(live_service: LiveFactory) -> None:
    service = live_service()
    malformed = service.client.post("/chat", content=b"{", headers={"content-type": "application/json"})
    assert malformed.status_code == 400
    missing = service.client.post("/chat", json={"query": "hi"})
    assert missing.status_code == 422 and missing.json()["errors"][0]["field"] == "api_key"


def test_an_unreachable_upstream_is_a_typed_error(live_service: LiveFactory) -> None:
    with refused_port() as port:
        service = live_service(base_url=f"http://127.0.0.1:{port}/v1")
        events = parse_sse(service.client.post("/chat", json=body()).text).events
    assert [e.event for e in events] == ["metadata", "error"]
    assert events[1].json()["type"] == "upstream_unavailable"
