"""Two real `python -m service` processes sharing one real redis-server, the demo upstream recording
every generation: what a client sees when its requests land on either process, and when one is
`kill -9`'d mid-answer.
"""

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from service.demo_model import DemoModelServer, expected_text
from tests.http.test_runs import QUERY, body, check_whole, read_some, slow
from tests.support.servers import ServiceProcess, refused_port, run_service_process
from tests.support.sse import parse_sse, text_of
from tests.support.streams import LiveStream
from tests.support.waiting import wait_until

LEASE = 1.0  # HAYSTREAM_STORE_LEASE here: a killed producer is noticed within LEASE + LEASE / 3
Start = Callable[[], tuple[ServiceProcess, ServiceProcess]]


@pytest.fixture
def two_processes(upstream_server: DemoModelServer, redis_url: str, tmp_path: Path) -> Iterator[Start]:
    with ExitStack() as stack:

        def start() -> tuple[ServiceProcess, ServiceProcess]:
            env = {
                "HAYSTREAM_BASE_URL": upstream_server.base_url,
                "HAYSTREAM_MODEL": "demo",
                "HAYSTREAM_STORE_URL": redis_url,
                "HAYSTREAM_STORE_LEASE": str(LEASE),
                "HAYSTREAM_UPSTREAM_MAX_RETRIES": "0",
            }
            a = stack.enter_context(run_service_process(env=env, log_dir=tmp_path, kill_on_exit=True))
            b = stack.enter_context(run_service_process(env=env, log_dir=tmp_path, kill_on_exit=True))
            return a, b

        yield start


def busy_threads(service: ServiceProcess) -> float:
    text = httpx.get(service.url + "/metrics", timeout=5).text
    line = next(line for line in text.splitlines() if line.startswith("haystream_pool_busy_threads "))
    return float(line.split()[1])


def test_resume_on_the_other_process_gives_the_exact_text_once(
    two_processes: Start, upstream_server: DemoModelServer
) -> None:
    upstream_server.behaviour = slow()
    a, b = two_processes()
    headers = {"Idempotency-Key": "across-processes"}
    with httpx.Client(base_url=a.url, timeout=30) as to_a, httpx.Client(base_url=b.url, timeout=30) as to_b:
        with LiveStream(to_a, body(), headers) as stream:
            first = read_some(stream, 5)
        resume = headers | {"Last-Event-ID": str(first[-1].id)}
        answer = to_b.post("/chat", json=body(), headers=resume)
        assert answer.status_code == 200, answer.text
        second = parse_sse(answer.text).events
    check_whole(first, second, upstream_server.behaviour)
    assert len(upstream_server.requests) == 1


def test_one_idempotency_key_ten_times_alternating_processes_is_one_generation(
    two_processes: Start, upstream_server: DemoModelServer
) -> None:
    upstream_server.behaviour = slow(tokens=20)
    services = two_processes()
    headers = {"Idempotency-Key": "ten-times"}
    texts = []
    for i in range(10):
        with httpx.Client(base_url=services[i % 2].url, timeout=30) as client:
            texts.append(text_of(parse_sse(client.post("/chat", json=body(), headers=headers).text).events))
    assert texts == [expected_text(QUERY, upstream_server.behaviour)] * 10
    assert len(upstream_server.requests) == 1


def test_delete_on_the_non_owner_closes_the_upstream_and_frees_the_thread(
    two_processes: Start, upstream_server: DemoModelServer
) -> None:
    upstream_server.behaviour = slow(tokens=5000, token_delay=0.01)
    a, b = two_processes()
    run = httpx.post(a.url + "/runs", json=body(), timeout=10).json()
    record = upstream_server.wait_for_requests(1)[0]
    wait_until(lambda: busy_threads(a) == 1, 5, "the run to take a thread")
    assert httpx.delete(f"{b.url}/runs/{run['run_id']}", timeout=10).status_code == 204
    assert record.closed.wait(5) and not record.completed
    wait_until(lambda: busy_threads(a) == 0, 5, "the owner's thread to be freed")


def test_kill_9_of_the_producer_gives_readers_elsewhere_interrupted_within_the_bound(
    two_processes: Start, upstream_server: DemoModelServer
) -> None:
    upstream_server.behaviour = slow(tokens=5000, token_delay=0.01)
    a, b = two_processes()
    run = httpx.post(a.url + "/runs", json=body(), timeout=10).json()
    with httpx.Client(base_url=b.url, timeout=30) as to_b:
        with LiveStream(to_b, None, method="GET", url=run["events_url"]) as stream:
            got = read_some(stream, 5)
            a.process.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            rest = stream.rest()
            took = time.monotonic() - killed
        events = got + rest
        assert events[-1].event == "error" and events[-1].json()["type"] == "interrupted"
        assert events[-1].json()["retryable"] is True
        assert "end" not in [event.event for event in events]
        assert took < LEASE + LEASE / 3 + 1.0, f"interrupted {took:.2f} s after the kill"
        print(f"\nkill -9 -> interrupted on the other process: {took:.2f} s (lease {LEASE} s)")
        resumed = parse_sse(to_b.get(run["events_url"], headers={"Last-Event-ID": str(got[-1].id)}).text).events
    assert resumed[-1].json()["type"] == "interrupted", "a later resume says the same"
    assert text_of(got + resumed) == text_of(events)


def test_an_unreachable_store_stops_the_start_up_with_a_message_naming_the_setting(tmp_path: Path) -> None:
    with refused_port() as port:
        url = f"redis://:hunter2@127.0.0.1:{port}/0"
        env = {"HAYSTREAM_STORE_URL": url, "HAYSTREAM_BASE_URL": "http://127.0.0.1:9/v1", "PATH": "/usr/bin:/bin"}
        done = subprocess.run(
            [sys.executable, "-m", "service", "--port", str(port + 1)],
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )
    output = (done.stdout + done.stderr).decode()
    assert done.returncode != 0
    assert f"HAYSTREAM_STORE_URL=redis://:***@127.0.0.1:{port}/0" in output
    assert "hunter2" not in output
