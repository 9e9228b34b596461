"""The Redis store where requests really fan out: `--workers 2` on one port, and two processes behind
the real nginx (`deploy/nginx.conf`) with a round-robin upstream. Fresh connections each time, so
the kernel (workers) or nginx (replicas) picks the process; the demo upstream counts generations.
"""

from pathlib import Path

import httpx

from service.demo_model import DemoModelServer, expected_text
from tests.http.test_runs import QUERY, body, check_whole, read_some, slow
from tests.support.nginx import AS_SHIPPED, nginx_in_front
from tests.support.servers import run_service_process
from tests.support.sse import parse_sse, text_of
from tests.support.streams import LiveStream


def env_for(upstream: DemoModelServer, redis_url: str) -> dict[str, str]:
    return {
        "HAYSTREAM_BASE_URL": upstream.base_url,
        "HAYSTREAM_MODEL": "demo",
        "HAYSTREAM_STORE_URL": redis_url,
        "HAYSTREAM_UPSTREAM_MAX_RETRIES": "0",
    }


def check_idempotency_and_resume(url: str, upstream: DemoModelServer) -> None:
    """Ten requests with one key, then a dropped stream resumed ten times: one generation each."""
    headers = {"Idempotency-Key": "fan-out"}
    texts = []
    for _ in range(10):
        with httpx.Client(base_url=url, timeout=30) as client:
            texts.append(text_of(parse_sse(client.post("/chat", json=body(), headers=headers).text).events))
    assert texts == [expected_text(QUERY, upstream.behaviour)] * 10
    assert len(upstream.requests) == 1
    with httpx.Client(base_url=url, timeout=30) as client, LiveStream(client, body(), {"Idempotency-Key": "b"}) as s:
        first = read_some(s, 3)
    for _ in range(10):
        with httpx.Client(base_url=url, timeout=30) as client:
            resume = {"Idempotency-Key": "b", "Last-Event-ID": str(first[-1].id)}
            answer = client.post("/chat", json=body(), headers=resume)
            assert answer.status_code == 200, answer.text
            check_whole(first, parse_sse(answer.text).events, upstream.behaviour)
    assert len(upstream.requests) == 2


def test_two_workers_on_one_port_keep_the_promises(
    upstream_server: DemoModelServer, redis_url: str, tmp_path: Path
) -> None:
    upstream_server.behaviour = slow(tokens=20)
    env = env_for(upstream_server, redis_url)
    with run_service_process("--workers", "2", env=env, log_dir=tmp_path) as service:
        check_idempotency_and_resume(service.url, upstream_server)


def test_two_replicas_behind_nginx_round_robin_keep_the_promises(
    upstream_server: DemoModelServer, redis_url: str, tmp_path: Path
) -> None:
    upstream_server.behaviour = slow(tokens=20)
    env = env_for(upstream_server, redis_url)
    with (
        run_service_process(env=env, log_dir=tmp_path) as a,
        run_service_process(env=env, log_dir=tmp_path) as b,
        nginx_in_front(a.url, AS_SHIPPED, b.url) as url,
    ):
        check_idempotency_and_resume(url, upstream_server)
        served = [service.log.read_text().count('"POST /chat HTTP/1.1" 200') for service in (a, b)]
        assert min(served) >= 5, f"round-robin: {served} requests per replica"
