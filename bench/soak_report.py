"""bench/SOAK.md: what a soak run found, with the machine, the exact command and the raw figures."""

import json
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol


class CheckLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def passed(self) -> bool: ...
    @property
    def detail(self) -> str: ...


NOTES = (
    "- The baseline is taken after a warm-up (a short mixed round, then every slot held at once): the",
    "  stream pool starts its threads lazily (up to max_streams + 4) and keeps them, so a cold baseline",
    "  would show growth that is not a leak. Readings are taken once the service is quiet: no active",
    "  stream, no busy pool thread, and fds, threads and tasks unchanged over 5 polls 0.1 s apart. The",
    "  client closes its connections before each reading.",
    "- RSS: CPython's allocator and glibc's per-thread arenas keep memory they freed, so a warm process",
    "  creeps up and levels off; a leak grows steadily. Hence two checks: growth over the baseline, and",
    "  growth per request over the second half of the mixed phase (`rss_mib_by_requests_done`). A",
    "  tracemalloc comparison over 2,000 in-process requests (2026-11-21) found 0.17 KiB of Python",
    "  objects per request, all of it connections still open at the snapshot.",
    "- The service puts full garbage collections off (`service/ops/gc_policy.py`: they stall every stream",
    "  for up to ~200 ms under load), so each request's objects in reference cycles (its pipeline,",
    "  OpenAI client, ~20 KB) wait for the next one, and RSS rises to a higher plateau before it levels",
    "  off: about +60 MiB after 3,000 requests, still rising, and +76 MiB after 15,000, flat over the",
    "  second half. Hence the 15,000 requests, and the 96 MiB tolerance.",
    "- The 503 latency is measured by a client `burst_concurrency` requests at a time on the same",
    "  machine: above ~16 the client's own CPU (httpx) and its queue dominate the figure. Pauses hit every",
    "  request in flight at once: a full garbage collection in the service takes ~70 ms on this machine.",
    "- Upstream retries are off (`HAYSTREAM_UPSTREAM_MAX_RETRIES=0`) so each injected fault reaches its",
    "  client as injected, and `/metrics` can be compared with what the clients saw, exactly.",
)


def machine() -> dict[str, str]:
    return {
        "nproc": _run(["nproc"]) or str(len(os.sched_getaffinity(0))),
        "cpu_count": str(os.cpu_count()),
        "free -g": _run(["free", "-g"]) or "(free not available)",
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "load": " ".join(f"{load:.2f}" for load in os.getloadavg()),
    }


def _run(command: list[str]) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def write_markdown(
    path: Path, command: str, passed: bool, checks: Sequence[CheckLike], figures: dict[str, Any]
) -> None:
    host = machine()
    resources = figures["resources"]
    lines = [
        "# Soak run",
        "",
        "Written by `bench/soak.py` (see its docstring for the phases); `tests/external/test_soak.py` runs the same",
        "code with a few hundred requests. Figures are from the service process (one uvicorn worker).",
        "",
        f"- Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Machine: nproc {host['nproc']} (cpu_count {host['cpu_count']}), {host['platform']}",
        f"- Python: {host['python']}",
        f"- Load average when written (1, 5, 15 min; the machine is shared): {host['load']}",
        f"- Command: `{command}`",
        "",
        "`free -g`:",
        "",
        "```",
        host["free -g"],
        "```",
        "",
        f"## Result: {'PASS' if passed else 'FAIL'}",
        "",
        "| check | result | detail |",
        "| --- | --- | --- |",
        *(f"| {c.name} | {'ok' if c.passed else 'FAIL'} | {c.detail} |" for c in checks),
        "",
        "## Service process, baseline (after warm-up) and after",
        "",
        "| reading | baseline | after | delta |",
        "| --- | --- | --- | --- |",
        *(f"| {name} | {row['baseline']} | {row['after']} | {row['delta']:+} |" for name, row in resources.items()),
        "",
        "## Phases",
        "",
        f"- Mixed: {sum(figures['mixed_by_kind'].values())} requests in {figures['seconds']['mixed']} s "
        f"({figures['mixed_requests_per_second']} requests/s); kinds {figures['mixed_by_kind']}; "
        f"statuses {figures['mixed_statuses']}",
        f"- Normal answers, client-side time to first token (ms): {figures['normal_ttft_ms']}",
        f"- Normal answers, client-side duration (ms): {figures['normal_duration_ms']}",
        f"- Burst: {figures['burst_held']} streams held, then statuses {figures['burst_statuses']}; "
        f"503 latency (ms): {figures['burst_503_latency_ms']}",
        f"- Service CPU time, baseline to after: {figures['service_cpu_seconds']} s",
        "",
        "## How to read it",
        "",
        *NOTES,
        "",
        "## Raw figures",
        "",
        "```json",
        json.dumps(figures, indent=2, sort_keys=True),
        "```",
        "",
    ]
    path.write_text("\n".join(lines))
