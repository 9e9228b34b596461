"""Conversations across processes: two replicas, and `--workers 2`, sharing one real redis-server.

Each question goes out on a fresh connection, as a browser behind a round-robin balancer sends it.
With a store per process, some follow-ups landed where the conversation was unknown and silently
started a new one (`history_turns: 0`), and `GET /conversations/{id}` answered 404 on the others.
"""

import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.redis_contents import everything_in
from tests.support.servers import ServiceProcess, run_service_process
from tests.support.sse import parse_sse

KEY = "sk-shared-conversations-SENTINEL-41c2"
FOLLOW_UPS = 10
MAX_FOLLOW_UPS = 40  # `--workers 2`: asked until both workers have answered some (the kernel picks)


def env(redis_url: str) -> dict[str, str]:
    return {
        "HAYSTREAM_STORE_URL": redis_url,
        "HAYSTREAM_DEMO_TOKEN_DELAY": "0",
        "HAYSTREAM_DEMO_FIRST_TOKEN_DELAY": "0",
        "HAYSTREAM_CONVERSATION_MAX_MESSAGES": str(2 * (MAX_FOLLOW_UPS + 1)),  # every turn kept: counts go up
    }


def ask(url: str, query: str, conversation_id: str) -> dict[str, Any]:
    """One turn on a new connection; its `metadata`, once the stream has ended with `end`."""
    body = {"query": query, "api_key": KEY, "conversation_id": conversation_id}
    response = httpx.post(f"{url}/chat", json=body, timeout=30)
    assert response.status_code == 200, response.text
    events = parse_sse(response.text).events
    assert events[-1].event == "end", events[-1]
    metadata: dict[str, Any] = events[0].json()
    return metadata


def messages(url: str, conversation_id: str) -> list[dict[str, str]]:
    response = httpx.get(f"{url}/conversations/{conversation_id}", timeout=10)
    assert response.status_code == 200, (url, response.text)
    found: list[dict[str, str]] = response.json()["messages"]
    return found


@pytest.fixture
def two_replicas(tmp_path: Path, redis_url: str) -> Iterator[list[ServiceProcess]]:
    with ExitStack() as stack:
        yield [
            stack.enter_context(run_service_process("--demo", env=env(redis_url), log_dir=tmp_path, ready="/readyz"))
            for _ in range(2)
        ]


def test_follow_ups_alternating_replicas_continue_one_conversation(
    two_replicas: list[ServiceProcess], redis_url: str
) -> None:
    urls = [replica.url for replica in two_replicas]
    conversation_id = ask(urls[0], "Question 0", "new")["conversation_id"]
    turns = []
    for n in range(1, FOLLOW_UPS + 1):
        metadata = ask(urls[n % 2], f"Question {n}", conversation_id)
        assert metadata["conversation_id"] == conversation_id
        turns.append(metadata["history_turns"])
    assert turns == list(range(1, FOLLOW_UPS + 1))  # 10/10: each saw every earlier turn
    on_each = [messages(url, conversation_id) for url in urls]
    assert on_each[0] == on_each[1]
    assert [m["content"] for m in on_each[0]][::2] == [f"Question {n}" for n in range(FOLLOW_UPS + 1)]
    held = everything_in(redis_url)
    assert b"Question 10" in held and KEY.encode() not in held and b"SENTINEL" not in held

    assert httpx.delete(f"{urls[1]}/conversations/{conversation_id}", timeout=10).status_code == 204
    assert httpx.get(f"{urls[0]}/conversations/{conversation_id}", timeout=10).status_code == 404


def chat_workers(log: Path) -> list[int]:
    """The `worker` of each `POST /chat` access line in a JSON log, in order."""
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [line["worker"] for line in lines if line.get("path") == "/chat" and line.get("method") == "POST"]


def test_follow_ups_on_two_workers_of_one_port_continue_one_conversation(tmp_path: Path, redis_url: str) -> None:
    args = ("--demo", "--workers", "2", "--log-format", "json")
    with run_service_process(*args, env=env(redis_url), log_dir=tmp_path, ready="/readyz", start_timeout=60) as service:
        conversation_id = ask(service.url, "Question 0", "new")["conversation_id"]
        n = 0
        while n < FOLLOW_UPS or (len(set(chat_workers(service.log))) < 2 and n < MAX_FOLLOW_UPS):
            n += 1
            metadata = ask(service.url, f"Question {n}", conversation_id)
            assert (metadata["conversation_id"], metadata["history_turns"]) == (conversation_id, n)
        assert len(set(chat_workers(service.log))) == 2, "one worker answered every question"
        reads = [messages(service.url, conversation_id) for _ in range(6)]
        assert all(read == reads[0] for read in reads) and len(reads[0]) == 2 * (n + 1)
