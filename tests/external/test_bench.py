"""A quick run of the benchmark, so it cannot rot. It checks behaviour (exact text, no errors,
upstreams closed), never timings: the figures belong in docs/performance.md, not in assertions."""

import json
import subprocess
import sys
from pathlib import Path

import bench.conversations
import bench.handoff
import bench.transport


def test_the_benchmark_runs_and_its_streams_are_exact(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    command = [sys.executable, "-m", "bench.run", "--quick", "--only", "ttft1", "throughput", "disconnect", "cold"]
    subprocess.run([*command, "--json", str(out)], check=True, capture_output=True, timeout=300)
    results = json.loads(out.read_text())
    assert results["ttft1"]["service"]["errors"] == 0
    assert results["ttft1"]["upstream"]["errors"] == 0
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


def test_the_transport_comparison_runs() -> None:
    figures = bench.transport.main(tokens=20)
    layers = ("body", "OpenAIGenerator.run")
    assert set(figures) == {f"{name} {layer}" for name in ("httpx", "http11") for layer in layers}
    assert all(value > 0 for value in figures.values())


def test_the_conversation_store_comparison_runs(redis_url: str) -> None:
    figures = bench.conversations.main(redis_url, n=20)
    assert len(figures) == 16
    assert all(value > 0 for value in figures.values())
