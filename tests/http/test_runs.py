"""Resumable runs over real HTTP: a run outlives its connection, replays from Last-Event-ID, and is bounded.

Every test drives a real uvicorn and the local demo upstream, and checks what the upstream saw:
a resumed or attached run is one upstream request, never two. Each runs against both stores
(`memory://` and a real redis-server): the shared suite; tests/store/ has what needs two processes.
"""

import socket
from typing import Any

import pytest

from service.demo_model import Behaviour, DemoModelServer, expected_text
from service.errors import CapacityExceeded
from tests.conftest import LiveFactory, LiveService
from tests.support.probes import port_of, read_until
from tests.support.sse import SSEEvent, parse_sse, text_of
from tests.support.streams import LiveStream
from tests.support.waiting import wait_until

KEY = "sk-runs-SENTINEL-7c1a"
QUERY = "Can I come back for the rest?"


def body(key: str = KEY) -> dict[str, str]:
    return {"query": QUERY, "api_key": key}


def slow(**overrides: Any) -> Behaviour:
    """Long enough that a reader can leave mid-answer; fast enough for a test."""
    return Behaviour(**({"tokens": 40, "first_token_delay": 0.0, "token_delay": 0.01} | overrides))


def seq(event: SSEEvent) -> int:
    assert event.id is not None
    return int(event.id.rpartition(":")[2])


def read_some(stream: LiveStream, words: int) -> list[SSEEvent]:
    """Events up to and including the data event that brings the text to `words` tokens."""
    events: list[SSEEvent] = []
    while text_of(events).count(" ") < words:
        event = stream.next_event()
        assert event is not None and event.event in ("metadata", "data"), event
        events.append(event)
    return events


def check_whole(first: list[SSEEvent], second: list[SSEEvent], behaviour: Behaviour) -> None:
    """Two connections' events make exactly one answer: no gap, no duplicate, ids increasing."""
    events = first + second
    assert [seq(event) for event in events] == list(range(len(events)))
    assert len({event.id for event in events}) == len(events)
    assert events[0].event == "metadata" and events[-1].event == "end"
    assert text_of(events) == expected_text(QUERY, behaviour)


def idle(service: LiveService) -> None:
    state = service.state
    wait_until(lambda: state.threads.busy == 0, 10, "the pool's busy count to return to zero")
    wait_until(lambda: state.admission.active == 0, 10, "every run to be released")


@pytest.fixture(params=["memory", "redis"])
def store_url(request: pytest.FixtureRequest) -> str:
    """Every test here runs against both stores: the same promises, one process."""
    return "memory://" if request.param == "memory" else str(request.getfixturevalue("redis_url"))


@pytest.fixture
def service(live_service: LiveFactory, upstream_server: DemoModelServer, store_url: str) -> Any:
    def start(behaviour: Behaviour | None = None, **settings: Any) -> LiveService:
        upstream_server.behaviour = behaviour or slow()
        return live_service(**({"resume_grace": 10.0, "queue_size": 4, "store_url": store_url} | settings))

    return start


@pytest.mark.parametrize("how", ["Idempotency-Key", "chat_resume_grace"])
def test_a_dropped_chat_resumes_with_last_event_id(how: str, service: Any, upstream_server: DemoModelServer) -> None:
    live = service(chat_resume_grace=10.0 if how == "chat_resume_grace" else 0.0)
    headers = {"Idempotency-Key": "action-1"} if how == "Idempotency-Key" else {}
    with LiveStream(live.client, body(), headers) as stream:
        first = read_some(stream, 5)
    last_id = first[-1].id
    assert last_id is not None and last_id.startswith(first[0].json()["run_id"] + ":")

    with LiveStream(live.client, body(), headers | {"Last-Event-ID": last_id}) as stream:
        assert stream.response.status_code == 200
        second = stream.rest()

    check_whole(first, second, upstream_server.behaviour)
    assert len(upstream_server.requests) == 1
    idle(live)


def test_a_chat_without_grace_is_cancelled_and_a_retry_is_refused(
    service: Any, upstream_server: DemoModelServer
) -> None:
    live = service(chat_resume_grace=0.0, behaviour=slow(tokens=1000, token_delay=0.05))
    with LiveStream(live.client, body()) as stream:
        first = read_some(stream, 2)
    record = upstream_server.wait_for_requests(1)[0]
    assert record.closed.wait(5) and record.client_gone
    idle(live)

    retry = live.client.post("/chat", json=body(), headers={"Last-Event-ID": str(first[-1].id)})
    assert retry.status_code == 410
    assert retry.json()["type"] == "run_expired" and retry.json()["retryable"] is False
    assert len(upstream_server.requests) == 1, "a refused resume must not start a generation"


def test_last_event_id_of_someone_elses_run_is_refused(service: Any, upstream_server: DemoModelServer) -> None:
    live = service()
    events = parse_sse(live.client.post("/chat", json=body(), headers={"Idempotency-Key": "k"}).text).events
    retry = live.client.post("/chat", json=body("sk-other-key"), headers={"Last-Event-ID": str(events[1].id)})
    assert retry.status_code == 410 and retry.json()["type"] == "run_expired"
    assert len(upstream_server.requests) == 1


def test_runs_api_start_read_drop_and_resume(service: Any, upstream_server: DemoModelServer) -> None:
    live = service()
    created = live.client.post("/runs", json=body())
    assert created.status_code == 201
    run_id, url = created.json()["run_id"], created.json()["events_url"]
    assert url == f"/runs/{run_id}/events" and created.headers["location"] == url
    assert KEY not in created.text and KEY not in url

    with LiveStream(live.client, None, method="GET", url=url) as stream:
        assert stream.response.headers["content-type"] == "text/event-stream"
        first = read_some(stream, 5)
    with LiveStream(live.client, None, {"Last-Event-ID": str(first[-1].id)}, method="GET", url=url) as stream:
        second = stream.rest()

    check_whole(first, second, upstream_server.behaviour)
    assert len(upstream_server.requests) == 1
    done = live.client.get(url, headers={"Last-Event-ID": str(second[-1].id)})
    assert done.status_code == 204, "a finished run read to its end: EventSource must stop reconnecting"
    idle(live)


def test_several_readers_of_one_run(service: Any, upstream_server: DemoModelServer) -> None:
    live = service()
    url = live.client.post("/runs", json=body()).json()["events_url"]
    with (
        LiveStream(live.client, None, method="GET", url=url) as one,
        LiveStream(live.client, None, method="GET", url=url) as two,
    ):
        a, b = one.rest(), two.rest()
    assert a == b
    check_whole(a, [], upstream_server.behaviour)
    late = parse_sse(live.client.get(url).text).events  # a reader after the end replays it all
    assert late == a
    assert len(upstream_server.requests) == 1


@pytest.mark.parametrize("read_first", [True, False], ids=["reader-left", "never-read"])
def test_nobody_back_within_the_grace_cancels_the_run(
    read_first: bool, service: Any, upstream_server: DemoModelServer
) -> None:
    live = service(resume_grace=0.3, behaviour=slow(tokens=1000, token_delay=0.05))
    url = live.client.post("/runs", json=body()).json()["events_url"]
    if read_first:
        with LiveStream(live.client, None, method="GET", url=url) as stream:
            read_some(stream, 2)
    record = upstream_server.wait_for_requests(1)[0]
    assert record.closed.wait(5), "the upstream stayed open after the grace"
    assert record.client_gone and not record.completed
    idle(live)
    gone = live.client.get(url)
    assert gone.status_code == 404 and gone.json()["type"] == "run_not_found"


def test_a_reader_back_within_the_grace_keeps_the_run(service: Any, upstream_server: DemoModelServer) -> None:
    grace = 2.0
    live = service(resume_grace=grace, behaviour=slow(tokens=200, token_delay=0.02))  # 4 s: outlasts the wait
    url = live.client.post("/runs", json=body()).json()["events_url"]
    with LiveStream(live.client, None, method="GET", url=url) as stream:
        first = read_some(stream, 1)
    record = upstream_server.wait_for_requests(1)[0]
    assert not record.closed.wait(grace / 2), "the run was cancelled while the grace was still running"
    with LiveStream(live.client, None, {"Last-Event-ID": str(first[-1].id)}, method="GET", url=url) as stream:
        second = stream.rest()
    check_whole(first, second, upstream_server.behaviour)
    assert len(upstream_server.requests) == 1


def test_delete_stops_a_run_at_once(service: Any, upstream_server: DemoModelServer) -> None:
    live = service(behaviour=slow(tokens=1000, token_delay=0.05))
    created = live.client.post("/runs", json=body()).json()
    with LiveStream(live.client, None, method="GET", url=created["events_url"]) as stream:
        read_some(stream, 2)
        assert live.client.delete(f"/runs/{created['run_id']}").status_code == 204
        rest = stream.rest()
    assert rest[-1].event == "error" and rest[-1].json()["type"] == "cancelled"
    record = upstream_server.wait_for_requests(1)[0]
    assert record.closed.wait(5) and record.client_gone
    idle(live)
    missing = live.client.delete("/runs/run_nope")
    assert missing.status_code == 404 and missing.json()["type"] == "run_not_found"
    assert live.client.get("/runs/run_nope/events").status_code == 404


def test_idempotency_key_attaches_to_the_same_run(service: Any, upstream_server: DemoModelServer) -> None:
    live = service()
    headers = {"Idempotency-Key": "click-42"}
    first = live.client.post("/runs", json=body(), headers=headers)
    again = live.client.post("/runs", json=body(), headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    other_caller = live.client.post("/runs", json=body("sk-another-caller"), headers=headers)
    other_action = live.client.post("/runs", json=body(), headers={"Idempotency-Key": "click-43"})
    assert other_caller.status_code == other_action.status_code == 201
    ids = {first.json()["run_id"], other_caller.json()["run_id"], other_action.json()["run_id"]}
    assert len(ids) == 3
    wait_until(lambda: len(upstream_server.requests) == 3, 5, "three upstream requests")
    for run_id in ids:
        events = parse_sse(live.client.get(f"/runs/{run_id}/events").text).events
        assert text_of(events) == expected_text(QUERY, upstream_server.behaviour)
    assert len(upstream_server.requests) == 3


def test_a_repeated_chat_with_the_same_idempotency_key_replays_instead_of_generating(
    service: Any, upstream_server: DemoModelServer
) -> None:
    live = service()
    headers = {"Idempotency-Key": "send-button-7"}
    with LiveStream(live.client, body(), headers) as one:
        read_some(one, 3)
        with LiveStream(live.client, body(), headers) as two:
            b = two.rest()
        a = one.rest()
    assert text_of(b) == expected_text(QUERY, upstream_server.behaviour)
    assert b[-1].event == "end" and a[-1] == b[-1]
    assert len(upstream_server.requests) == 1


def test_replay_is_bounded_and_a_resume_from_before_it_is_refused(
    service: Any, upstream_server: DemoModelServer
) -> None:
    live = service(replay_max_events=16, behaviour=slow(tokens=60, token_delay=0.0))
    run = live.client.post("/runs", json=body()).json()
    events = parse_sse(live.client.get(run["events_url"]).text).events
    assert text_of(events) == expected_text(QUERY, upstream_server.behaviour), "a live reader gets everything"
    assert len(events) > 16
    for last_id in (None, events[0].id):
        headers = {} if last_id is None else {"Last-Event-ID": str(last_id)}
        refused = live.client.get(run["events_url"], headers=headers)
        assert refused.status_code == 410 and refused.json()["type"] == "replay_unavailable"
    tail = parse_sse(live.client.get(run["events_url"], headers={"Last-Event-ID": str(events[-10].id)}).text)
    assert tail.events == events[-9:]


def test_retained_runs_are_bounded_oldest_finished_first(
    service: Any, upstream_server: DemoModelServer, store_url: str
) -> None:
    """The bound is on what this process holds. In Redis an evicted finished run stays readable until
    its keys' TTL (the retention): the process no longer holds it, any process can still replay it."""
    live = service(max_streams=2, runs_max_retained=2, behaviour=slow(tokens=3))
    first, second = (live.client.post("/runs", json=body()).json() for _ in range(2))
    for run in (first, second):
        assert parse_sse(live.client.get(run["events_url"]).text).events[-1].event == "end"
    third = live.client.post("/runs", json=body()).json()
    assert live.state.runs.local.get(first["run_id"]) is None, "the oldest finished run is evicted"
    evicted = live.client.get(first["events_url"])
    if store_url == "memory://":
        assert evicted.status_code == 404
    else:
        assert parse_sse(evicted.text).events[-1].event == "end"
    assert live.client.get(second["events_url"]).status_code == 200
    assert live.client.get(third["events_url"]).status_code == 200

    upstream_server.behaviour = slow(tokens=1000, token_delay=0.05)
    running = [live.client.post("/runs", json=body()) for _ in range(2)]
    assert [response.status_code for response in running] == [201, 201]
    full = live.client.post("/runs", json=body())
    assert full.status_code == 503 and full.json()["type"] == "at_capacity" and "retry-after" in full.headers
    for response in running:
        assert live.client.delete(f"/runs/{response.json()['run_id']}").status_code == 204
    idle(live)


def test_a_run_the_store_refuses_after_all_is_cancelled_with_a_503(
    service: Any, upstream_server: DemoModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store had room when checked, but filled while the run was being prepared (retrieval awaits):
    the run, already started, is refused and cancelled, not left running with nobody to read it."""
    live = service(behaviour=slow(tokens=1000, token_delay=0.05))

    async def full(held: object) -> None:
        raise CapacityExceeded

    monkeypatch.setattr(live.state.runs, "put", full)
    refused = live.client.post("/runs", json=body())
    assert refused.status_code == 503 and refused.json()["type"] == "at_capacity"
    idle(live)  # the run released its slot and its thread
    assert all(record.closed.wait(5) and not record.completed for record in upstream_server.requests)


def test_a_run_past_its_max_duration_ends_with_an_error(service: Any, upstream_server: DemoModelServer) -> None:
    live = service(run_max_duration=0.5, behaviour=slow(tokens=1000, token_delay=0.05))
    events = parse_sse(live.client.post("/chat", json=body()).text).events
    assert events[-1].event == "error" and events[-1].json()["type"] == "run_timeout"
    assert 0 < len(text_of(events)) < len(expected_text(QUERY, upstream_server.behaviour))
    record = upstream_server.wait_for_requests(1)[0]
    assert record.closed.wait(5) and not record.completed
    idle(live)


def test_runs_api_validates_like_chat(service: Any, upstream_server: DemoModelServer) -> None:
    live = service()
    assert live.client.post("/runs", json={"query": QUERY}).status_code == 422
    assert live.client.post("/runs", json={"query": " ", "api_key": KEY}).status_code == 422
    bad_id = live.client.get(
        live.client.post("/runs", json=body()).json()["events_url"], headers={"Last-Event-ID": "run_x:3"}
    )
    assert bad_id.status_code == 422 and bad_id.json()["type"] == "invalid_request"
    assert KEY not in bad_id.text


def test_a_reader_that_falls_behind_the_replay_buffer_gets_a_defined_error(
    service: Any, upstream_server: DemoModelServer
) -> None:
    """One reader keeps up, another stops reading: the log drops what the slow one missed, and says so."""
    behaviour = slow(tokens=100, token_delay=0.0, token_chars=64 * 1024)
    live = service(replay_max_events=16, send_timeout=30, behaviour=behaviour)
    url = live.client.post("/runs", json=body()).json()["events_url"]
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.settimeout(10)
    stuck.connect(("127.0.0.1", port_of(live.url)))
    try:
        stuck.sendall(f"GET {url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        received = read_until(stuck, b"event: metadata")
        fast_reader = parse_sse(live.client.get(url).text).events
        assert text_of(fast_reader) == expected_text(QUERY, behaviour)
        while part := stuck.recv(1 << 20):
            received += part
    finally:
        stuck.close()
    stream = dechunk(received.partition(b"\r\n\r\n")[2])
    events = parse_sse(stream.decode()).events
    assert events[-1].event == "error" and events[-1].json()["type"] == "replay_unavailable"
    last_frame = stream.rstrip(b"\n").rsplit(b"\n\n", 1)[-1]
    assert last_frame.startswith(b"event: error\n"), "no id: a reconnect resumes from the last event it got"
    assert len(upstream_server.requests) == 1


def dechunk(body: bytes) -> bytes:
    """An HTTP/1.1 chunked body, unframed."""
    out = b""
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out, body = out + body[:size], body[size + 2 :]
    return out


def test_a_run_nobody_reads_yet_still_ends_and_stays_readable(service: Any, upstream_server: DemoModelServer) -> None:
    """Backpressure holds a run nobody reads, but never its last event: a short answer ends and is kept."""
    live = service(queue_size=4, resume_grace=1.0, behaviour=slow(tokens=2))  # at most 4 frames: the window
    run = live.client.post("/runs", json=body()).json()
    store = live.state.runs
    wait_until(lambda: (held := store.local.get(run["run_id"])) is not None and held.ended, 5, "the unread run to end")
    events = parse_sse(live.client.get(run["events_url"]).text).events
    check_whole(events, [], upstream_server.behaviour)
