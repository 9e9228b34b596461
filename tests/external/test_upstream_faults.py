"""Every upstream fault, end to end: the client gets the answer or a typed `error`, and nothing is left behind.

Each row runs the real path (uvicorn on a loopback port, the OpenAI SDK, the demo model server
with a fault switched on), then checks that the stream closed cleanly (the whole chunked body
arrived), that the upstream request was closed, that the pool, the registry and the event loop
are back to idle, and that the very next request gets the full answer.
"""

import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import pytest

from service.demo_model import Behaviour, DemoModelServer, expected_text
from tests.conftest import LiveFactory, LiveService
from tests.support.probes import Settled
from tests.support.servers import unused_port
from tests.support.sse import SSEParser, parse_sse, text_of

KEY = "sk-faults-SENTINEL-7d3a9b"
QUERY = "What happens when the upstream fails?"
TOKENS = 6
FAST: dict[str, Any] = {"tokens": TOKENS, "first_token_delay": 0.0, "token_delay": 0.0}
SHORT_TIMEOUT = 0.5


@dataclass(frozen=True)
class Fault:
    behaviour: dict[str, Any]
    error: str | None = None  # the `error` event's type; None: the full answer and `end`
    retryable: bool = False
    settings: dict[str, Any] = field(default_factory=dict)
    refused: bool = False  # no upstream listening: no request reaches it


FAULTS = {
    "401": Fault({"fault": "http_401"}, "upstream_auth", False),
    "403": Fault({"fault": "http_403"}, "upstream_auth", False),
    "404 unknown model": Fault({"fault": "http_404"}, "upstream_rejected", False),
    "429 with retry-after": Fault({"fault": "http_429"}, "rate_limited", True),
    "500": Fault({"fault": "http_500"}, "upstream_unavailable", True),
    "503": Fault({"fault": "http_503"}, "upstream_unavailable", True),
    "connection refused": Fault({}, "upstream_unavailable", True, refused=True),
    "reset mid-stream": Fault({"fault": "reset", "fault_after": 2}, "upstream_unavailable", True),
    "malformed chunk": Fault({"fault": "malformed", "fault_after": 2}, "upstream_malformed", True),
    "chunk with no text": Fault({"fault": "empty_chunk", "fault_after": 2}),
    "no [DONE]": Fault({"fault": "no_done"}),
    "cut short without a finish reason": Fault({"fault": "close_mid", "fault_after": 2}, "upstream_unavailable", True),
    "stall before the first byte": Fault(
        {"fault": "stall_before_headers"}, "upstream_timeout", True, {"upstream_first_byte_timeout": SHORT_TIMEOUT}
    ),
    "stall mid-stream": Fault(
        {"fault": "stall_mid", "fault_after": 2}, "upstream_timeout", True, {"upstream_timeout": SHORT_TIMEOUT}
    ),
    "first token slower than the keep-alive": Fault(
        {"first_token_delay": 0.7}, settings={"keepalive_interval": 0.2, "upstream_timeout": 10}
    ),
    "one very large chunk": Fault({"fault": "large_chunk", "fault_after": 2, "large_chunk_chars": 1_000_000}),
}


def chat(service: LiveService) -> tuple[str, SSEParser]:
    """POST /chat and read the whole body: httpx raises if the chunked body does not end cleanly."""
    response = service.client.post("/chat", json={"query": QUERY, "api_key": KEY})
    assert response.status_code == 200
    return response.text, parse_sse(response.text)


def assert_full_answer(parser: SSEParser, behaviour: Behaviour) -> None:
    names = [event.event for event in parser.events]
    assert names[0] == "metadata" and names[-1] == "end", names
    assert text_of(parser.events) == expected_text(QUERY, behaviour)
    assert parser.events[-1].json()["finish_reason"] == "stop"


@pytest.fixture
def settled_service(live_service: LiveFactory, upstream_server: DemoModelServer) -> Any:
    def start(**settings: Any) -> tuple[LiveService, Settled]:
        upstream_server.behaviour = Behaviour(**FAST)
        service = live_service(**settings)
        return service, Settled(service, lambda: assert_full_answer(chat(service)[1], Behaviour(**FAST)))

    return start


@pytest.mark.parametrize("name", list(FAULTS))
def test_upstream_fault_ends_the_stream_cleanly_and_leaves_nothing_behind(
    name: str, settled_service: Any, upstream_server: DemoModelServer
) -> None:
    fault = FAULTS[name]
    settings = dict(fault.settings)
    with ExitStack() as stack:
        if fault.refused:  # an upstream on a port of its own, stopped for the fault and started again after
            port = unused_port()
            upstream_server = stack.enter_context(DemoModelServer(port=port, behaviour=Behaviour(**FAST)))
            settings["base_url"] = upstream_server.base_url
        service, settled = settled_service(**settings)
        if fault.refused:
            stack.close()
    before = len(upstream_server.requests)
    behaviour = upstream_server.behaviour = Behaviour(**(FAST | fault.behaviour))

    raw, parser = chat(service)

    assert parser.events[0].event == "metadata"
    assert KEY not in raw
    if fault.error is None:
        assert_full_answer(parser, behaviour)
    else:
        names = [event.event for event in parser.events]
        assert names[-1] == "error" and "end" not in names, names
        error = parser.events[-1].json()
        assert error["type"] == fault.error and error["retryable"] is fault.retryable
        assert set(error) == {"type", "message", "retryable"} | (
            {"retry_after"} if fault.error == "rate_limited" else set()
        )
        assert error["message"] and "Incorrect API key" not in error["message"]
        if fault.error == "rate_limited":
            assert error["retry_after"] == 1
        if not fault.behaviour.get("fault", "").startswith("http_") and not fault.refused:
            text, expected = text_of(parser.events), expected_text(QUERY, behaviour)
            if fault.behaviour["fault"] in ("reset", "malformed", "close_mid"):  # every token before the cut
                assert text == expected
            else:  # a stall: the timeout comes before the rest of the answer
                assert text == expected[: len(text)]
    if "keepalive_interval" in fault.settings:
        assert "comment:keep-alive" in parser.log[1 : parser.log.index("event:data")], parser.log
    ids = [int((event.id or ":-1").rpartition(":")[2]) for event in parser.events]
    assert ids == list(range(len(ids)))

    records = upstream_server.requests[before:]
    assert len(records) == (0 if fault.refused else 1), "the service retried (upstream_max_retries is 0 here)"
    for record in records:
        assert record.closed.wait(5), "the upstream request was never closed"
        assert record.api_key == KEY
    settled.check()

    with ExitStack() as stack:
        if fault.refused:
            upstream_server = stack.enter_context(DemoModelServer(port=port))
        upstream_server.behaviour = Behaviour(**FAST)
        assert_full_answer(chat(service)[1], upstream_server.behaviour)
        settled.check()


def test_a_503_before_the_first_chunk_is_retried_and_the_answer_arrives_once(
    live_service: LiveFactory, upstream_server: DemoModelServer
) -> None:
    upstream_server.behaviour = Behaviour(**FAST, fault="http_503", fail_first_n=1)
    service = live_service(upstream_max_retries=2)
    _, parser = chat(service)
    assert_full_answer(parser, Behaviour(**FAST))
    assert [event.event for event in parser.events].count("metadata") == 1
    assert len(upstream_server.requests) == 2, "one refused request, one retry that succeeded"
    assert [record.api_key for record in upstream_server.requests] == [KEY, KEY]


def test_retries_give_up_after_upstream_max_retries(
    live_service: LiveFactory, upstream_server: DemoModelServer
) -> None:
    upstream_server.behaviour = Behaviour(**FAST, fault="http_503")
    service = live_service(upstream_max_retries=1)
    _, parser = chat(service)
    assert parser.events[-1].json()["type"] == "upstream_unavailable"
    assert len(upstream_server.requests) == 2


@pytest.mark.parametrize(
    "behaviour",
    [
        {"fault": "reset", "fault_after": 2},
        {"fault": "close_mid", "fault_after": 2},
        {"fault": "malformed", "fault_after": 2},
        {"fault": "stall_mid", "fault_after": 2},
    ],
)
def test_nothing_is_retried_once_text_was_sent(
    live_service: LiveFactory, upstream_server: DemoModelServer, behaviour: dict[str, Any]
) -> None:
    upstream_server.behaviour = Behaviour(**(FAST | behaviour))
    service = live_service(upstream_max_retries=3, upstream_timeout=SHORT_TIMEOUT)
    _, parser = chat(service)
    assert parser.events[-1].event == "error"
    assert text_of(parser.events) == expected_text(QUERY, Behaviour(**FAST))[: len("tok0 tok1 ")]
    (record,) = upstream_server.wait_for_requests(1)
    assert record.closed.wait(5)
    assert len(upstream_server.requests) == 1, "a stream that had sent text was retried"


def test_a_stall_before_the_headers_fails_after_the_first_byte_timeout_of_each_try(
    live_service: LiveFactory, upstream_server: DemoModelServer
) -> None:
    """Regression: a stalled upstream took 3 x the 30 s read timeout (93 s) to fail before the first chunk."""
    upstream_server.behaviour = Behaviour(**FAST, fault="stall_before_headers")
    service = live_service(upstream_timeout=20, upstream_first_byte_timeout=0.3, upstream_max_retries=1)
    started = time.monotonic()
    _, parser = chat(service)
    elapsed = time.monotonic() - started
    assert parser.events[-1].json()["type"] == "upstream_timeout"
    assert len(upstream_server.requests) == 2  # the retry got its own first-byte timeout
    assert 0.6 <= elapsed < 5, f"{elapsed:.1f} s: 2 x 0.3 s plus one backoff (at most 0.5 s) was expected"


def test_gaps_between_chunks_get_the_read_timeout_not_the_first_byte_one(
    live_service: LiveFactory, upstream_server: DemoModelServer
) -> None:
    upstream_server.behaviour = Behaviour(**FAST, fault="stall_mid", fault_after=2, stall=0.8)
    service = live_service(upstream_timeout=10, upstream_first_byte_timeout=0.3)
    _, parser = chat(service)
    assert_full_answer(parser, Behaviour(**FAST))
