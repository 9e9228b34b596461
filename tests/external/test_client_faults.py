"""Clients that leave, read slowly, stop reading, or all leave at once: every run is cancelled and cleaned up.

Large tokens (`token_chars`) make socket buffers fill after a few events, so backpressure and the
send timeout are exercised over real loopback sockets, not simulated.
"""

import logging
import socket
import time
from typing import Any

import pytest

from service.demo_model import Behaviour, DemoModelServer, expected_text
from tests.conftest import LiveFactory, LiveService
from tests.support.probes import Baseline, Settled, raw_chat, read_until
from tests.support.sse import parse_sse, text_of
from tests.support.streams import LiveStream

KEY = "sk-clients-SENTINEL-41e0c2"
QUERY = "Will you notice when I leave?"
BIG = 64 * 1024  # characters per token: a few events fill the loopback buffers


def body(key: str = KEY) -> dict[str, str]:
    return {"query": QUERY, "api_key": key}


def fast(**overrides: Any) -> Behaviour:
    return Behaviour(**({"tokens": 4, "first_token_delay": 0.0, "token_delay": 0.0} | overrides))


def full_answer(service: LiveService) -> None:
    events = parse_sse(service.client.post("/chat", json=body()).text).events
    assert events[-1].event == "end"
    assert text_of(events) == expected_text(QUERY, fast())


@pytest.fixture
def settled_service(live_service: LiveFactory, upstream_server: DemoModelServer) -> Any:
    def start(**settings: Any) -> tuple[LiveService, Settled]:
        upstream_server.behaviour = fast()
        service = live_service(**settings)
        return service, Settled(service, lambda: full_answer(service))

    return start


MOMENTS = {
    # name: (behaviour, data events read before leaving, may the upstream have completed?)
    "before the first token": (fast(first_token_delay=60), 0, False),
    "mid-stream": (fast(tokens=200, token_delay=0.05), 3, False),
    "right after the last chunk, the upstream still open": (fast(tokens=4, fault="stall_mid", fault_after=4), 4, False),
    "right after the last chunk": (fast(tokens=4), 4, True),
}


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_a_client_leaving_cancels_the_run_and_closes_the_upstream(
    moment: str, settled_service: Any, upstream_server: DemoModelServer
) -> None:
    behaviour, reads, may_complete = MOMENTS[moment]
    service, settled = settled_service()
    upstream_server.behaviour = behaviour
    stream = LiveStream(service.client, body())
    first = stream.next_event()
    assert first is not None and first.event == "metadata"
    text = ""
    while text.count(" ") < reads:  # tokens are "tokN ": chunks already waiting may share an event
        event = stream.next_event()
        assert event is not None and event.event == "data", event
        text += event.json()
    record = upstream_server.wait_for_requests(2)[1]
    stream.close()

    assert record.closed.wait(5), "the upstream connection stayed open after the client left"
    settled.check()
    run = settled.spy.runs[-1]
    if may_complete:
        assert run.outcome in ("client_gone", "completed")
        assert record.completed or record.client_gone
    else:
        assert run.outcome == "client_gone"
        assert record.client_gone and not record.completed
    upstream_server.behaviour = fast()
    full_answer(service)


def test_a_slow_reader_holds_the_upstream_back_and_is_not_dropped(
    settled_service: Any, upstream_server: DemoModelServer
) -> None:
    """One event a second: the bounded queue and the socket buffers throttle the upstream to the reader."""
    total = 1000
    service, settled = settled_service(queue_size=4, send_timeout=3)
    upstream_server.behaviour = fast(tokens=total, token_chars=BIG)
    sock = raw_chat(service.url, body(), rcvbuf=4096)
    try:
        read_until(sock, b"event: metadata")
        record = upstream_server.wait_for_requests(2)[1]
        for _ in range(3):
            time.sleep(1)  # the reader's pace, not a wait for the service
            received = 0
            while received < BIG:
                received += len(sock.recv(BIG - received))
        assert service.state.admission.active == 1, "a reader that makes progress was dropped"
        assert not record.closed.is_set()
        assert record.tokens_sent < total // 4, f"{record.tokens_sent} of {total} tokens left the upstream"
    finally:
        sock.close()
    assert record.closed.wait(5) and record.client_gone
    settled.check()


def test_a_reader_that_stops_reading_is_dropped_after_the_send_timeout(
    settled_service: Any, upstream_server: DemoModelServer, caplog: pytest.LogCaptureFixture
) -> None:
    total = 1000
    service, settled = settled_service(queue_size=4, send_timeout=1)
    upstream_server.behaviour = fast(tokens=total, token_chars=BIG)
    sock = raw_chat(service.url, body(), rcvbuf=4096)
    try:
        read_until(sock, b"event: metadata")
        record = upstream_server.wait_for_requests(2)[1]
        # Never read again. Without backpressure the upstream would send all 64 MiB in well under a second.
        assert record.closed.wait(10), "a stuck reader's run was never cancelled"
        assert record.client_gone and not record.completed
        assert record.tokens_sent < total // 4, f"{record.tokens_sent} of {total} tokens left the upstream"
        settled.check()
        assert settled.spy.runs[-1].outcome == "client_gone"
        # Dropped by the send timeout (not some other way), which says so:
        drops = [r for r in caplog.records if r.name == "service.http.send_watchdog" and r.levelno == logging.WARNING]
        assert [(r.getMessage(), r.send_timeout) for r in drops] == [  # type: ignore[attr-defined]
            ("client stopped reading; dropping the stream", 1)
        ]
    finally:
        sock.close()
    upstream_server.behaviour = fast()
    full_answer(service)


def test_hundreds_of_clients_leaving_at_once(live_service: LiveFactory, upstream_server: DemoModelServer) -> None:
    count = 200
    upstream_server.behaviour = fast()
    service = live_service()
    full_answer(service)
    baseline = Baseline.take(service, upstream_server)
    upstream_server.behaviour = fast(tokens=10_000, token_delay=0.2)

    socks: list[socket.socket] = []
    try:
        socks += [raw_chat(service.url, body(f"sk-many-{n}")) for n in range(count)]
        for sock in socks:
            read_until(sock, b"event: data")
        assert service.state.admission.active == count
        assert upstream_server.open_connections >= count
        assert service.state.threads.busy == count, "each stream holds a pool thread while it streams"
    finally:
        for sock in socks:  # all at once
            sock.close()

    baseline.wait_back(service, upstream_server)
    records = upstream_server.requests[1:]
    assert len(records) == count
    assert all(record.closed.wait(5) and record.client_gone for record in records)
    upstream_server.behaviour = fast()
    full_answer(service)
