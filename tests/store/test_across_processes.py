"""Two service instances sharing one real redis-server: every promise holds whichever one is asked.

Each instance is a `create_app` under its own uvicorn (its own event loop and thread), with its own
`RedisRunStore` (its own process id, follower and leases): to Redis they are two processes. The
demo upstream records every generation, so "exactly one" is checked where it is paid for.
"""

import time
from typing import Any

import pytest

from service.demo_model import Behaviour, DemoModelServer, expected_text
from tests.conftest import LiveFactory, LiveService
from tests.http.test_runs import QUERY, body, check_whole, idle, read_some, seq, slow
from tests.support.redis_server import RedisServer
from tests.support.sse import parse_sse, text_of
from tests.support.streams import LiveStream
from tests.support.waiting import wait_until


@pytest.fixture
def pair(live_service: LiveFactory, upstream_server: DemoModelServer, redis_url: str) -> Any:
    def start(behaviour: Behaviour | None = None, **settings: Any) -> tuple[LiveService, LiveService]:
        upstream_server.behaviour = behaviour or slow()
        options = {"store_url": redis_url, "resume_grace": 10.0, "queue_size": 4, "store_lease": 0.6} | settings
        return live_service(**options), live_service(**options)

    return start


def test_a_chat_resumes_on_the_other_process_with_its_exact_text_once(
    pair: Any, upstream_server: DemoModelServer
) -> None:
    a, b = pair()
    headers = {"Idempotency-Key": "resume-across"}
    with LiveStream(a.client, body(), headers) as stream:
        first = read_some(stream, 5)
    with LiveStream(b.client, body(), headers | {"Last-Event-ID": str(first[-1].id)}) as stream:
        assert stream.response.status_code == 200
        second = stream.rest()
    check_whole(first, second, upstream_server.behaviour)
    assert len(upstream_server.requests) == 1


def test_the_other_process_replays_a_finished_run_from_any_id(pair: Any, upstream_server: DemoModelServer) -> None:
    a, b = pair(slow(tokens=12, token_delay=0.0))
    run = a.client.post("/runs", json=body()).json()
    whole = parse_sse(a.client.get(run["events_url"]).text).events
    for cut in (0, 3, len(whole) - 2):
        rest = parse_sse(b.client.get(run["events_url"], headers={"Last-Event-ID": str(whole[cut].id)}).text).events
        check_whole(whole[: cut + 1], rest, upstream_server.behaviour)
    assert b.client.get(run["events_url"], headers={"Last-Event-ID": str(whole[-1].id)}).status_code == 204
    assert len(upstream_server.requests) == 1


def test_one_idempotency_key_sent_ten_times_to_alternating_processes_is_one_generation(
    pair: Any, upstream_server: DemoModelServer
) -> None:
    a, b = pair()
    headers = {"Idempotency-Key": "pay-once"}
    answers = [(a, b)[i % 2].client.post("/runs", json=body(), headers=headers) for i in range(10)]
    assert [response.status_code for response in answers] == [201] + [200] * 9
    assert len({response.json()["run_id"] for response in answers}) == 1
    events = parse_sse(b.client.get(answers[0].json()["events_url"]).text).events
    assert text_of(events) == expected_text(QUERY, upstream_server.behaviour)
    assert len(upstream_server.requests) == 1


def test_a_chat_with_a_key_on_the_other_process_attaches_to_the_run(
    pair: Any, upstream_server: DemoModelServer
) -> None:
    a, b = pair()
    headers = {"Idempotency-Key": "attach-across"}
    with LiveStream(a.client, body(), headers) as first, LiveStream(b.client, body(), headers) as second:
        one, two = first.rest(), second.rest()
    assert one[0].json()["run_id"] == two[0].json()["run_id"]
    assert text_of(one) == text_of(two) == expected_text(QUERY, upstream_server.behaviour)
    assert len(upstream_server.requests) == 1


def test_delete_on_the_process_that_does_not_own_the_run_closes_the_upstream_and_frees_the_thread(
    pair: Any, upstream_server: DemoModelServer
) -> None:
    a, b = pair(slow(tokens=2000, token_delay=0.01))
    run = a.client.post("/runs", json=body()).json()
    with LiveStream(b.client, None, method="GET", url=run["events_url"]) as stream:
        read_some(stream, 3)
        record = upstream_server.wait_for_requests(1)[0]
        sent = time.monotonic()
        assert b.client.delete(f"/runs/{run['run_id']}").status_code == 204
        assert record.closed.wait(5) and not record.completed
        stopped_in = time.monotonic() - sent
        print(f"\nDELETE on the non-owner -> upstream closed on the owner: {stopped_in * 1000:.1f} ms")
        rest = stream.rest()
    assert rest[-1].event == "error" and rest[-1].json()["type"] == "cancelled"
    idle(a)
    assert stopped_in < 1.0, f"the owner took {stopped_in * 1000:.0f} ms to close the upstream"


def test_a_reader_on_the_other_process_keeps_the_run_alive_past_the_grace(
    pair: Any, upstream_server: DemoModelServer
) -> None:
    """POST /runs on A, read only through B: A has no reader of its own, but B's lease counts."""
    a, b = pair(slow(tokens=60, token_delay=0.03), resume_grace=0.5)
    run = a.client.post("/runs", json=body()).json()
    events = parse_sse(b.client.get(run["events_url"]).text).events
    assert events[-1].event == "end"
    assert text_of(events) == expected_text(QUERY, upstream_server.behaviour)


def test_a_run_whose_last_reader_elsewhere_left_is_cancelled_after_the_grace(
    pair: Any, upstream_server: DemoModelServer
) -> None:
    a, b = pair(slow(tokens=2000, token_delay=0.01), resume_grace=0.5)
    run = a.client.post("/runs", json=body()).json()
    with LiveStream(b.client, None, method="GET", url=run["events_url"]) as stream:
        read_some(stream, 3)
        left = time.monotonic()
    record = upstream_server.wait_for_requests(1)[0]
    assert record.closed.wait(10) and not record.completed
    assert time.monotonic() - left >= 0.5, "cancelled before the grace was over"
    idle(a)
    # The owner deletes an abandoned run's keys once its copy to Redis has ended, a moment after it
    # released the run; until then the other process can still read the log (which ends `cancelled`).
    wait_until(lambda: b.client.get(run["events_url"]).status_code == 404, 5, "an abandoned run to be unresumable")


def test_ids_are_one_run_s_numbers_in_order_across_processes(pair: Any) -> None:
    a, b = pair(slow(tokens=20, token_delay=0.0))
    run = a.client.post("/runs", json=body()).json()
    events = parse_sse(b.client.get(run["events_url"]).text).events
    assert [seq(event) for event in events] == list(range(len(events)))
    assert all(str(event.id).startswith(run["run_id"] + ":") for event in events)


def test_a_run_owned_elsewhere_is_not_another_callers(pair: Any) -> None:
    a, b = pair()
    with LiveStream(a.client, body(), {"Idempotency-Key": "mine"}) as stream:
        first = read_some(stream, 2)
    stolen = b.client.post("/chat", json=body("sk-someone-else"), headers={"Last-Event-ID": str(first[-1].id)})
    assert stolen.status_code == 410


def test_the_other_process_waits_for_the_owner_to_copy_what_it_sent(
    pair: Any, upstream_server: DemoModelServer
) -> None:
    """A client may hold an id the owner sent before its copy reached Redis: B follows from it."""
    a, b = pair(slow(tokens=30, token_delay=0.01))
    with LiveStream(a.client, body(), {"Idempotency-Key": "fresh"}) as stream:
        first = read_some(stream, 1)
    rest = parse_sse(b.client.post("/chat", json=body(), headers={"Last-Event-ID": str(first[-1].id)}).text).events
    check_whole(first, rest, upstream_server.behaviour)
    wait_until(lambda: len(upstream_server.requests) == 1, 1, "one generation")


def test_a_finished_runs_keys_idempotency_key_included_expire_with_the_retention(
    pair: Any, redis_server: RedisServer
) -> None:
    a, _ = pair(slow(tokens=3), runs_retention=30.0)
    run = a.client.post("/runs", json=body(), headers={"Idempotency-Key": "expiring"}).json()
    assert parse_sse(a.client.get(run["events_url"]).text).events[-1].event == "end"
    keys = [key for key in redis_server.command("KEYS", "hs:*").decode().split("\r\n") if key.startswith("hs:")]
    run_keys = [key for key in keys if run["run_id"] in key or key.startswith("hs:idem:")]
    assert len(run_keys) == 3  # the record, the log, the Idempotency-Key (no reader elsewhere)

    def ttls() -> list[int]:
        return [int(redis_server.command("PTTL", key).strip(b":\r\n")) for key in run_keys]

    wait_until(lambda: all(0 < ttl <= 30_000 for ttl in ttls()), 5, f"the retention as TTLs: {ttls()}")


@pytest.mark.parametrize("bound", ["replay_max_events", "replay_max_bytes"])
def test_the_stream_is_bounded_like_the_log_and_a_resume_before_it_is_refused(
    pair: Any, redis_server: RedisServer, bound: str
) -> None:
    """MAXLEN ~ / MINID ~ trim whole stream nodes (100 entries): 600 events against a bound of 16
    events, or of 4 KiB of them, leave at most a node or two; a resume from the start gets 410."""
    limits = {"replay_max_events": 16} if bound == "replay_max_events" else {"replay_max_bytes": 4096}
    a, b = pair(slow(tokens=600, token_delay=0.002), queue_size=1, **limits)
    run = a.client.post("/runs", json=body()).json()
    events = parse_sse(a.client.get(run["events_url"]).text).events
    assert events[-1].event == "end" and len(events) > 300
    held = int(redis_server.command("XLEN", f"hs:run:{run['run_id']}:log").strip(b":\r\n"))
    assert held <= 250, f"{held} entries held"
    early = b.client.get(run["events_url"], headers={"Last-Event-ID": str(events[3].id)})
    assert early.status_code == 410 and early.json()["type"] == "replay_unavailable"
    late = parse_sse(b.client.get(run["events_url"], headers={"Last-Event-ID": str(events[-3].id)}).text).events
    assert [event.id for event in late] == [event.id for event in events[-2:]]
