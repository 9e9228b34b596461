"""The Redis store when things fail: Redis down at start-up, Redis lost mid-stream and back, a dead producer.

Redis is a real redis-server, really stopped and started again (`own_redis`); a dead producer is a
run whose process's lease does not exist (what `kill -9` leaves behind: see tests/external/ for
the real kill).
"""

import asyncio
import json
import time
from typing import Any

import httpx
import pytest

from service.app import create_app
from service.demo_model import DemoModelServer
from service.errors import StoreUnavailable
from service.settings import Settings
from service.store.redis_keys import entry_id, log_key, run_key
from service.store.redis_runs import RedisRunStore
from service.streaming.sse import Event, encode
from tests.conftest import LiveFactory, SettingsFactory
from tests.http.test_runs import body, idle, read_some, slow
from tests.support.redis_server import RedisServer
from tests.support.servers import refused_port
from tests.support.sse import parse_sse
from tests.support.streams import LiveStream
from tests.support.waiting import wait_until


async def test_a_store_that_cannot_be_reached_stops_the_start_up_naming_the_setting(
    make_settings: SettingsFactory, caplog: pytest.LogCaptureFixture
) -> None:
    with refused_port() as port:
        app = create_app(make_settings(store_url=f"redis://:hunter2@127.0.0.1:{port}/0"))
        with pytest.raises(StoreUnavailable) as refused:
            async with app.router.lifespan_context(app):
                pass
    assert f"HAYSTREAM_STORE_URL=redis://:***@127.0.0.1:{port}/0" in str(refused.value)
    assert "hunter2" not in str(refused.value) and "hunter2" not in caplog.text
    assert "HAYSTREAM_STORE_URL" in caplog.text


def test_redis_lost_mid_stream_ends_readers_with_a_retryable_error_and_recovers(
    live_service: LiveFactory, upstream_server: DemoModelServer, own_redis: RedisServer
) -> None:
    upstream_server.behaviour = slow(tokens=2000, token_delay=0.01)
    options: dict[str, Any] = {"store_url": own_redis.url, "resume_grace": 10.0, "store_lease": 0.6}
    a, b = live_service(**options), live_service(**options)
    run = a.client.post("/runs", json=body(), headers={"Idempotency-Key": "during"}).json()
    with (
        LiveStream(a.client, None, method="GET", url=run["events_url"]) as local,
        LiveStream(b.client, None, method="GET", url=run["events_url"]) as remote,
    ):
        read_some(local, 3)
        read_some(remote, 3)
        own_redis.stop()
        for stream in (local, remote):
            last = stream.rest()[-1]
            assert last.event == "error" and last.json()["type"] == "store_unavailable", last
            assert last.json()["retryable"] is True
    record = upstream_server.wait_for_requests(1)[0]
    assert record.closed.wait(5) and not record.completed, "the producer stopped"
    idle(a)
    for service in (a, b):
        refused = service.client.post("/chat", json=body())
        assert refused.status_code == 503 and refused.json()["type"] == "store_unavailable"
        assert refused.headers["retry-after"] == "1"
        assert service.client.get("/readyz").json()["status"] == "store_unavailable"
    own_redis.start()
    upstream_server.behaviour = slow(tokens=5)
    wait_until(lambda: a.client.post("/runs", json=body()).status_code == 201, 10, "a new run once Redis is back")
    events = parse_sse(b.client.post("/chat", json=body()).text).events
    assert events[-1].event == "end"
    assert a.client.get("/readyz").status_code == b.client.get("/readyz").status_code == 200


def _frame(run_id: str, seq: int, name: str, data: Any) -> bytes:
    return encode(Event(name, json.dumps(data), f"{run_id}:{seq}"))


async def _orphan(store: RedisRunStore, run_id: str) -> None:
    """A run whose process is gone: its record, metadata and two data events; no lease, no end."""
    commands = store.commands
    await commands.hset(run_key(run_id), mapping={"owner": b"\0".hex(), "process": "proc_gone"})  # type: ignore[misc]
    events = [("metadata", {"run_id": run_id}), ("data", "Half "), ("data", "an answer")]
    for seq, (name, data) in enumerate(events):
        fields = {b"f": _frame(run_id, seq, name, data), b"e": name.encode()}
        await commands.xadd(log_key(run_id), fields, id=entry_id(seq))  # type: ignore[arg-type]


async def _read_all(store: RedisRunStore, run_id: str, last_event_id: str | None) -> bytes:
    handle = await store.get(run_id)
    assert handle is not None
    reader = await handle.open_reader(last_event_id)
    assert reader is not None
    try:
        return b"".join([frame async for frame in reader.frames if not frame.startswith(b":")])
    finally:
        reader.on_close()


async def test_readers_of_a_run_whose_process_died_get_interrupted_after_the_text_once(
    make_settings: SettingsFactory, redis_url: str
) -> None:
    settings: Settings = make_settings(store_url=redis_url, store_lease=0.6)
    stores = [RedisRunStore(settings), RedisRunStore(settings)]
    for store in stores:
        await store.open()
    try:
        await _orphan(stores[0], "run_orphan")
        started = time.monotonic()
        both = await asyncio.gather(*(_read_all(store, "run_orphan", None) for store in stores))
        took = time.monotonic() - started
        for text in both:
            events = parse_sse(text.decode()).events
            assert [event.event for event in events] == ["metadata", "data", "data", "error"]
            assert events[-1].json() | {"message": ""} == {"type": "interrupted", "retryable": True, "message": ""}
            assert events[-1].id == "run_orphan:3"
        assert took < 0.6 + 0.2 + 1.0, f"interrupted after {took:.2f} s"
        assert await stores[0].commands.xlen(log_key("run_orphan")) == 4, "written once, whoever noticed"
        again = parse_sse((await _read_all(stores[1], "run_orphan", "run_orphan:2")).decode()).events
        assert [event.json()["type"] for event in again] == ["interrupted"], "a later resume says the same"
    finally:
        for store in stores:
            await store.close(1)


def test_a_producer_that_learns_it_was_declared_dead_stops(
    live_service: LiveFactory, upstream_server: DemoModelServer, redis_url: str, redis_server: RedisServer
) -> None:
    """Its lease lapsed (a long pause) and another process wrote `interrupted`: the next event it writes
    is refused, and it stops paying for an answer nobody can get whole."""
    upstream_server.behaviour = slow(tokens=2000, token_delay=0.01)
    a = live_service(store_url=redis_url, resume_grace=10.0)
    run = a.client.post("/runs", json=body()).json()
    record = upstream_server.wait_for_requests(1)[0]
    wait_until(lambda: int(redis_server.command("XLEN", log_key(run["run_id"])).split(b":")[1]) > 2, 5, "events")
    last = redis_server.command("XREVRANGE", log_key(run["run_id"]), "+", "-", "COUNT", "1")
    seq = int(last.split(b"0-")[1].split(b"\r\n")[0])  # entry 0-n is event n - 1: n is the next event
    frame = _frame(run["run_id"], seq, "error", {"type": "interrupted"}).decode()
    redis_server.command("XADD", log_key(run["run_id"]), f"0-{seq + 1}", "f", frame, "e", "error")
    assert record.closed.wait(5) and not record.completed
    idle(a)


async def test_connections_stay_a_handful_while_200_readers_follow_runs_elsewhere(
    live_service: LiveFactory, upstream_server: DemoModelServer, redis_url: str, redis_server: RedisServer
) -> None:
    upstream_server.behaviour = slow(tokens=3000, token_delay=0.02)
    a, b = live_service(store_url=redis_url), live_service(store_url=redis_url)
    runs = [a.client.post("/runs", json=body()).json() for _ in range(4)]
    limits = httpx.Limits(max_connections=250, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=b.url, limits=limits, timeout=30) as client:
        streams = [client.stream("GET", runs[i % 4]["events_url"]) for i in range(200)]
        responses = [await stream.__aenter__() for stream in streams]
        for response in responses:
            assert (await anext(response.aiter_text())).startswith("id: ")
        listed = redis_server.command("CLIENT", "LIST").decode().splitlines()
        for stream in streams:
            await stream.__aexit__(None, None, None)
    process = b.state.runs.process  # type: ignore[attr-defined]
    held_by_b = [line for line in listed if f"name=haystream:{process}" in line]
    print(f"\nRedis connections of the process with 200 live readers: {len(held_by_b)}")
    assert len(held_by_b) <= 9, held_by_b  # the command pool (at most 8, the writer's included) and the follower
    for run in runs:
        a.client.delete(f"/runs/{run['run_id']}")


async def test_a_reader_of_a_run_whose_record_goes_ends_instead_of_waiting(
    make_settings: SettingsFactory, redis_url: str
) -> None:
    """The run's start failed after its Idempotency-Key was claimed (its record deleted), its process
    alive: a reader that attached meanwhile ends with `run_expired`, it does not wait for ever."""
    settings: Settings = make_settings(store_url=redis_url, store_lease=0.6)
    owner, reader_side = RedisRunStore(settings), RedisRunStore(settings)
    for store in (owner, reader_side):
        await store.open()
    try:
        await owner.commands.hset(run_key("run_unborn"), mapping={"owner": "00", "process": owner.process})  # type: ignore[misc]
        handle = await reader_side.get("run_unborn")
        assert handle is not None
        reader = await handle.open_reader(None)
        assert reader is not None
        await owner.commands.delete(run_key("run_unborn"))
        async with asyncio.timeout(3):
            frames = [frame async for frame in reader.frames if not frame.startswith(b":")]
        reader.on_close()
        assert [event.json()["type"] for event in parse_sse(b"".join(frames).decode()).events] == ["run_expired"]
    finally:
        for store in (owner, reader_side):
            await store.close(1)


def test_an_abandoned_run_is_forgotten_at_once_even_before_its_keys_are_deleted(
    live_service: LiveFactory, upstream_server: DemoModelServer, own_redis: RedisServer
) -> None:
    """The owner deletes an abandoned run's keys after its mirror has finished; with Redis refusing
    writes for a while (CLIENT PAUSE ... WRITE: reads still answer), those keys are still there when
    the run is abandoned, and the owner must not hand them out as a resumable run meanwhile."""
    upstream_server.behaviour = slow(tokens=2000, token_delay=0.01)
    live = live_service(store_url=own_redis.url, resume_grace=0.3)
    url = live.client.post("/runs", json=body()).json()["events_url"]  # published: its record is in Redis
    assert own_redis.command("CLIENT", "PAUSE", "4000", "WRITE").startswith(b"+OK")
    try:
        record = upstream_server.wait_for_requests(1)[0]
        assert record.closed.wait(5) and record.client_gone  # nobody came back within the grace
        idle(live)
        assert own_redis.command("EXISTS", run_key(url.split("/")[-2])) == b":1\r\n"  # the keys are still there
        gone = live.client.get(url)
        assert gone.status_code == 404 and gone.json()["type"] == "run_not_found"
    finally:
        own_redis.command("CLIENT", "UNPAUSE")
