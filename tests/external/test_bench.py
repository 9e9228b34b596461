"""A quick run of the benchmark, so it cannot rot. It checks behaviour (exact text, no errors,
upstreams closed), never timings: the figures belong in docs/performance.md, not in assertions."""

import json
import subprocess
import sys
from pathlib import Path

import bench.conversations
import bench.handoff
import bench.steps
import bench.transport


def test_the_benchmark_runs_and_its_streams_are_exact(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    command = [sys.executable, "-m", "bench.run", "--quick", "--only", "ttft1", "throughput", "disconnect", "cold"]
    subprocess.run([*command, "--json", str(out)], check=True, capture_output=True, timeout=300)
    results = json.loads(out.read_text())
    assert results["ttft1"]["service"]["errors"] == 0
    assert results["ttft1"]["upstream"]["errors"] == 0
    assert results["ttft1"]["relay_shared"]["errors"] == results["ttft1"]["relay_per-request"]["errors"] == 0
    assert results["ttft1"]["relay_shared"]["requests"] == results["ttft1"]["service"]["requests"]
    throughput = results["throughput"]["1w_service"]
    assert throughput["errors"] == 0
    assert throughput["tokens_exact"] > 0
    disconnect = results["disconnect"]
    assert disconnect["upstream_closed"] == disconnect["clients"]
    assert disconnect["upstream_completed"] == 0
    cold = results["cold"]
    assert len(cold["first_ttft_ms"]) == cold["starts"]
    assert cold["first_to_later_ratio"] > 0


def test_the_hand_off_comparison_runs() -> None:
    figures = bench.handoff.main()
    assert set(figures) == {"run_coroutine_threadsafe", "call_soon"}
    assert all(value > 0 for value in figures.values())


def test_the_per_token_steps_are_counted() -> None:
    figures = bench.steps.main()
    assert figures["us_per_chunk"] > 0
    assert figures["calls_per_chunk"] > 10  # every step of a chunk's way is a call or more


def test_the_timeline_of_one_request_runs() -> None:
    # Its own process: it patches the service's classes to put probes on each step.
    done = subprocess.run([sys.executable, "-m", "bench.timeline", "5"], check=True, capture_output=True, timeout=120)
    lines = done.stdout.decode().splitlines()
    assert any(line.endswith("first data bytes at the client") for line in lines), lines
    assert len(lines) >= 10, lines


def test_the_transport_comparison_runs() -> None:
    figures = bench.transport.main(tokens=20)
    layers = ("body", "OpenAIGenerator.run")
    assert set(figures) == {f"{name} {layer}" for name in ("httpx", "http11") for layer in layers}
    assert all(value > 0 for value in figures.values())


def test_the_overload_scenario_runs_and_counts_every_request(tmp_path: Path) -> None:
    out = tmp_path / "overload.json"
    command = [sys.executable, "-m", "bench.run", "--quick", "--only", "overload", "--json", str(out)]
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    overload = json.loads(out.read_text())["overload"]
    for side in ("upstream", "service_slots_only", "service_lag_5ms"):
        assert overload[side]["admitted"] + overload[side]["refused"] == overload["requests"], side
        assert overload[side]["errors"] == 0, side
    assert overload["upstream"]["refused"] == overload["service_slots_only"]["refused"] == 0
    probed = overload["service_lag_5ms"]
    assert probed["probe_admitted"] + probed["probe_refused"] > 0  # the independent client was heard


def test_the_openai_and_tracing_benchmark_runs_and_its_streams_are_exact(tmp_path: Path) -> None:
    out = tmp_path / "openai.json"
    command = [sys.executable, "-m", "bench.openai", "--quick", "--json", str(out)]
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    results = json.loads(out.read_text())
    assert results["ttft"]["errors"] == {"upstream": 0, "chat": 0, "openai": 0}
    rows = [*results["request"]["chat"], *results["request"]["openai"], *results["cpu"]["chat"]]
    rows += [*results["cpu"]["openai"], *results["tracing"]["off"], *results["tracing"]["on"]]
    assert rows and all(row["errors"] == 0 and row["tokens_per_s"] > 0 for row in rows)


def test_the_conversation_store_comparison_runs(redis_url: str) -> None:
    figures = bench.conversations.main(redis_url, n=20)
    assert len(figures) == 16
    assert all(value > 0 for value in figures.values())
