"""`python -m service --demo`: the README's run command, as a real process."""

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.servers import run_service_process, unused_port
from tests.support.sse import parse_sse, text_of
from tests.support.waiting import wait_until


@pytest.fixture
def demo_process(tmp_path: Path) -> Iterator[str]:
    env = {"HAYSTREAM_DEMO_TOKEN_DELAY": "0", "HAYSTREAM_DEMO_FIRST_TOKEN_DELAY": "0"}
    with run_service_process("--demo", env=env, log_dir=tmp_path) as service:
        yield service.url


def test_demo_mode_answers_offline_and_says_so(demo_process: str) -> None:
    response = httpx.post(f"{demo_process}/chat", json={"query": "Hello?", "api_key": "anything"}, timeout=30)
    events = parse_sse(response.text).events
    metadata = events[0].json()
    assert metadata["demo"] is True
    assert metadata["model"] == "demo"
    assert "demo model" in metadata["notice"]
    text = text_of(events)
    assert "demo model" in text
    assert "Hello?" in text
    assert events[-1].event == "end"


def test_invalid_configuration_is_refused_before_listening() -> None:
    env = os.environ | {"HAYSTREAM_MAX_STREAMS": "0"}
    command = [sys.executable, "-m", "service", "--port", str(unused_port())]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "max_streams" in result.stderr


@pytest.mark.parametrize("store", [None, "memory://"])
def test_several_workers_on_the_memory_store_are_refused_naming_the_setting(store: str | None) -> None:
    """Each worker would hold its own runs and conversations: a retry on another would start a second run."""
    env = {name: value for name, value in os.environ.items() if name != "HAYSTREAM_STORE_URL"}
    if store is not None:
        env["HAYSTREAM_STORE_URL"] = store
    command = [sys.executable, "-m", "service", "--demo", "--workers", "2", "--port", str(unused_port())]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "--workers 2 needs a shared store" in result.stderr
    assert "HAYSTREAM_STORE_URL=redis://" in result.stderr


def test_demo_mode_answers_from_the_sample_documents(demo_process: str) -> None:
    body = {"query": "How does the waggle dance work?", "api_key": "anything", "pipeline": "documents"}
    answer = httpx.post(f"{demo_process}/chat", json=body, headers={"Accept": "application/json"}, timeout=30).json()
    assert answer["sources"][0]["file"] == "honeybees.md"
    assert answer["finish_reason"] == "stop"


def test_the_served_process_collects_fully_once_idle(demo_process: str) -> None:
    """The put-off full collection (service/ops/gc_policy.py) runs once the last run has ended."""
    before = _full_collections(demo_process)
    response = httpx.post(f"{demo_process}/chat", json={"query": "Hello?", "api_key": "anything"}, timeout=30)
    assert parse_sse(response.text).events[-1].event == "end"
    wait_until(lambda: _full_collections(demo_process) > before, timeout=10, message="a full collection")


def _full_collections(url: str) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line.startswith('python_gc_collections_total{generation="2"}'):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("no generation-2 count in /metrics")
