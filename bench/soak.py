"""Soak run: thousands of streams through one service process, then its resources must be back.

    python -m bench.soak                      # 15,000 requests, 32 at a time, max_streams 64; writes bench/SOAK.md
    python -m bench.soak --requests 6000 --concurrency 48 --max-streams 96 --output -   # print only

Against `python -m service` (one uvicorn process) in front of `python -m service.demo_model --directives`:

1. warm-up: a short mixed round, then every stream slot held at once (the pool creates its threads
   lazily and keeps them), so the baseline is a warm process, not a cold one;
2. baseline: /proc/PID (RSS, OS threads, open fds, CPU time) and /metrics (asyncio tasks, Python
   threads, counters), once the service is quiet: no active stream, no busy pool thread, and fds
   and tasks unchanged over consecutive polls;
3. mixed: `requests` requests, `concurrency` at a time, below capacity: 70% normal answers, 15%
   clients walking away mid-stream, 15% upstream faults (HTTP errors, resets, malformed, cut or
   stalled streams); every request must get a 200 and the events its plan expects;
4. burst: `max_streams` streams held open, then `burst` more requests, every one of which must get
   a fast 503 with Retry-After; then the held clients walk away;
5. after: the same readings, once quiet again.

It passes when every request went as planned, RSS, threads, fds and tasks are within the stated
tolerances of the baseline, and /metrics counted exactly what the clients saw. `tests/external/test_soak.py`
runs the same code with a few hundred requests.
"""

import argparse
import asyncio
import dataclasses
import math
import shlex
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.soak_client import Plan, Result, extra_plan, hold_plan, mixed_plan, send
from bench.soak_processes import ProcSample, Stack, StackConfig, proc_sample, running_stack
from bench.soak_report import write_markdown

QUIET_POLLS = 5  # consecutive identical readings that count as quiet
POLL_INTERVAL = 0.1


@dataclass(frozen=True)
class SoakConfig:
    requests: int = 15_000
    concurrency: int = 32
    max_streams: int = 64
    burst: int = 500
    burst_concurrency: int = 8  # higher measures the client's own queue more than the service
    warmup: int = 200
    tokens: int = 24
    token_delay_ms: float = 5.0
    first_token_ms: float = 20.0
    settle_timeout: float = 60.0
    # Tolerances, after vs. baseline (see bench/SOAK.md for why these sizes).
    rss_tolerance_mib: float = 96.0
    thread_tolerance: int = 8
    fd_tolerance: int = 16
    task_tolerance: int = 2
    fast_503_p99: float = 0.5  # seconds; a full GC pause in either process is ~0.1 s here
    rss_slope_kib: float = 4.0  # per request, over the second half of the mixed phase
    segments: int = 10  # RSS is read after each tenth of the mixed phase

    def __post_init__(self) -> None:
        if self.concurrency >= self.max_streams:
            raise ValueError("the mixed phase must stay below capacity: concurrency < max_streams")


@dataclass(frozen=True)
class Snapshot:
    proc: ProcSample
    counters: dict[str, float]  # "name{label=value}" -> value, from /metrics

    def metric(self, key: str) -> float:
        return self.counters.get(key, 0.0)


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


@dataclass
class SoakReport:
    config: SoakConfig
    baseline: Snapshot
    after: Snapshot
    mixed: list[Result]
    holders: list[Result]
    extras: list[Result]
    seconds: dict[str, float] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    rss_curve: list[tuple[int, float]] = field(default_factory=list)  # (requests done, RSS MiB)

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    def figures(self) -> dict[str, Any]:
        normal = [r for r in self.mixed if r.plan.kind == "normal"]
        latencies = [r.elapsed for r in self.extras]
        return {
            "config": dataclasses.asdict(self.config),
            "seconds": self.seconds,
            "mixed_requests_per_second": round(len(self.mixed) / self.seconds["mixed"], 1),
            "mixed_by_kind": dict(Counter(r.plan.kind for r in self.mixed)),
            "mixed_statuses": dict(Counter(r.status for r in self.mixed)),
            "normal_ttft_ms": _percentiles([r.ttft for r in normal if r.ttft is not None]),
            "normal_duration_ms": _percentiles([r.elapsed for r in normal]),
            "burst_held": sum(r.last_event == "metadata" for r in self.holders),
            "burst_statuses": dict(Counter(r.status for r in self.extras)),
            "burst_503_latency_ms": _percentiles(latencies),
            "service_cpu_seconds": round(self.after.proc.cpu_seconds - self.baseline.proc.cpu_seconds, 2),
            "rss_mib_by_requests_done": self.rss_curve,
            "rss_slope_kib_per_request_second_half": _slope(self.rss_curve),
            "resources": _resources(self.baseline, self.after),
            "problems": [f"{r.plan.kind}: {r.problem()}" for r in self._all() if r.problem()][:20],
        }

    def _all(self) -> list[Result]:
        return [*self.mixed, *self.holders, *self.extras]


def _slope(curve: list[tuple[int, float]]) -> float | None:
    """RSS growth per request between the middle and the end of the mixed phase, in KiB."""
    if len(curve) < 3:
        return None
    (start, low), (end, high) = curve[len(curve) // 2], curve[-1]
    return round((high - low) * 1024 / (end - start), 3)


def _percentiles(values: Sequence[float]) -> dict[str, float | None]:
    ordered = sorted(values)

    def rank(q: float) -> float | None:
        return round(ordered[max(math.ceil(q * len(ordered)) - 1, 0)] * 1000, 1) if ordered else None

    return {"p50": rank(0.5), "p99": rank(0.99), "max": rank(1.0), "count": len(ordered)}


def _resources(baseline: Snapshot, after: Snapshot) -> dict[str, dict[str, float]]:
    rows = {
        "rss_mib": (baseline.proc.rss_bytes / 2**20, after.proc.rss_bytes / 2**20),
        "os_threads": (baseline.proc.threads, after.proc.threads),
        "python_threads": (baseline.metric("haystream_threads"), after.metric("haystream_threads")),
        "open_fds": (baseline.proc.fds, after.proc.fds),
        "asyncio_tasks": (baseline.metric("haystream_asyncio_tasks"), after.metric("haystream_asyncio_tasks")),
    }
    return {k: {"baseline": round(b, 1), "after": round(a, 1), "delta": round(a - b, 1)} for k, (b, a) in rows.items()}


async def run_soak(config: SoakConfig, log_dir: Path) -> SoakReport:
    stack_config = StackConfig(config.max_streams, config.tokens, config.token_delay_ms, config.first_token_ms, log_dir)
    with running_stack(stack_config) as stack:
        await _phase(stack, [mixed_plan(n, config.tokens) for n in range(config.warmup)], config.concurrency)
        await _burst(stack, config, extras=config.burst_concurrency)
        baseline = await _quiet_snapshot(stack, config)
        started = time.monotonic()
        mixed, rss_curve = await _mixed(stack, config)
        seconds = {"mixed": time.monotonic() - started}
        started = time.monotonic()
        holders, extras = await _burst(stack, config, extras=config.burst)
        seconds["burst"] = time.monotonic() - started
        started = time.monotonic()
        after = await _quiet_snapshot(stack, config)
        seconds["settle"] = time.monotonic() - started
    report = SoakReport(config, baseline, after, mixed, holders, extras, {k: round(v, 2) for k, v in seconds.items()})
    report.rss_curve = rss_curve
    report.checks = _checks(report)
    return report


def _client(stack: Stack, connections: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(base_url=stack.url, timeout=httpx.Timeout(60.0), limits=limits)


async def _phase(stack: Stack, plans: list[Plan], concurrency: int) -> list[Result]:
    """Every plan, `concurrency` at a time, in order of start; the client's connections closed after."""
    results: list[Result | None] = [None] * len(plans)
    queue = iter(enumerate(plans))
    async with _client(stack, concurrency) as client:

        async def worker() -> None:
            for index, plan in queue:
                results[index] = await send(client, plan)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return [r for r in results if r is not None]


async def _mixed(stack: Stack, config: SoakConfig) -> tuple[list[Result], list[tuple[int, float]]]:
    """The mixed phase in `segments` parts, reading RSS after each: a leak grows steadily, the allocator levels off."""
    plans = [mixed_plan(n, config.tokens) for n in range(config.requests)]
    size = math.ceil(len(plans) / config.segments)
    results: list[Result] = []
    curve = [(0, round(proc_sample(stack.pid).rss_bytes / 2**20, 1))]
    for start in range(0, len(plans), size):
        results += await _phase(stack, plans[start : start + size], config.concurrency)
        curve.append((len(results), round(proc_sample(stack.pid).rss_bytes / 2**20, 1)))
    return results, curve


async def _burst(stack: Stack, config: SoakConfig, extras: int) -> tuple[list[Result], list[Result]]:
    """Hold every slot, send `extras` more (each must be refused), then let the held clients walk away."""
    release, all_held = asyncio.Event(), asyncio.Event()
    held = 0

    def admitted() -> None:
        nonlocal held
        held += 1
        if held == config.max_streams:
            all_held.set()

    async with _client(stack, config.max_streams) as client:
        holders = [
            asyncio.create_task(send(client, hold_plan(n), release, admitted)) for n in range(config.max_streams)
        ]
        waiting = asyncio.create_task(all_held.wait())
        done, _ = await asyncio.wait([waiting, *holders], timeout=60, return_when=asyncio.FIRST_COMPLETED)
        refused = []
        if waiting in done:  # else a holder ended early (refused or failed): its result says why
            refused = await _phase(stack, [extra_plan(n) for n in range(extras)], config.burst_concurrency)
        waiting.cancel()
        release.set()
        return list(await asyncio.gather(*holders)), refused


async def scrape(url: str) -> dict[str, float]:
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(f"{url}/metrics")).text
    counters = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            counters[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return counters


async def _quiet_snapshot(stack: Stack, config: SoakConfig) -> Snapshot:
    """Readings once no stream is active, no pool thread busy, and fds and tasks have stopped changing."""
    deadline = time.monotonic() + config.settle_timeout
    same, previous = 0, None
    while True:
        counters = await scrape(stack.url)
        proc = proc_sample(stack.pid)
        idle = counters["haystream_active_streams"] == 0 and counters["haystream_pool_busy_threads"] == 0
        reading = (proc.fds, proc.threads, counters["haystream_asyncio_tasks"])
        same = same + 1 if idle and reading == previous else 0
        previous = reading
        if same >= QUIET_POLLS or time.monotonic() > deadline:
            return Snapshot(proc, counters)
        await asyncio.sleep(POLL_INTERVAL)


def _checks(report: SoakReport) -> list[Check]:
    config, figures = report.config, report.figures()
    resources = figures["resources"]
    problems = [r for r in report.mixed if r.problem()]
    server_errors = [r for r in report.mixed if r.status >= 500]
    holders_ok = all(r.problem() is None for r in report.holders)
    extras_ok = len(report.extras) == config.burst and all(r.problem() is None for r in report.extras)
    p99 = figures["burst_503_latency_ms"]["p99"]
    return [
        Check("every mixed request went as planned", not problems, f"{len(problems)} of {len(report.mixed)} did not"),
        Check("no 5xx below capacity", not server_errors, f"{len(server_errors)} responses with a 5xx"),
        Check("every slot could be held", holders_ok, f"{figures['burst_held']} of {config.max_streams} held"),
        Check("over capacity: a 503 with Retry-After", extras_ok, f"{figures['burst_statuses']}"),
        Check(
            "the 503s were fast",
            p99 is not None and p99 <= config.fast_503_p99 * 1000,
            f"p99 {p99} ms (limit {config.fast_503_p99 * 1000:.0f} ms)",
        ),
        _within("RSS", resources["rss_mib"], config.rss_tolerance_mib, "MiB"),
        Check(
            "RSS levels off (no steady growth)",
            (figures["rss_slope_kib_per_request_second_half"] or 0.0) <= config.rss_slope_kib,
            f"{figures['rss_slope_kib_per_request_second_half']} KiB per request over the second half of the mixed "
            f"phase (tolerance {config.rss_slope_kib})",
        ),
        _within("OS threads", resources["os_threads"], config.thread_tolerance),
        _within("Python threads", resources["python_threads"], config.thread_tolerance),
        _within("open fds", resources["open_fds"], config.fd_tolerance),
        _within("asyncio tasks", resources["asyncio_tasks"], config.task_tolerance),
        Check(
            "every upstream response closed",
            report.after.metric("haystream_upstream_open_responses") == 0,
            f"{report.after.metric('haystream_upstream_open_responses'):.0f} open after settling",
        ),
        _metrics_agree(report),
    ]


def _within(name: str, row: dict[str, float], tolerance: float, unit: str = "") -> Check:
    detail = f"{row['baseline']} -> {row['after']} ({row['delta']:+} {unit}, tolerance +{tolerance} {unit})"
    return Check(f"{name} back near baseline", row["delta"] <= tolerance, " ".join(detail.split()))


def _metrics_agree(report: SoakReport) -> Check:
    """/metrics, baseline to after, against what the clients of the measured phases saw."""
    results = report._all()
    seen: Counter[str] = Counter()
    for result in results:
        if result.status == 503:
            seen["outcome=rejected"] += 1
        elif result.last_event == "end":
            seen["outcome=completed"] += 1
        elif result.last_event == "error":
            seen["outcome=error"] += 1
            seen[f"type={result.error_type}"] += 1
        elif result.status == 200:
            seen["outcome=client_gone"] += 1
    counted: Counter[str] = Counter()
    for key in report.after.counters:
        for prefix in ("haystream_streams_total{", "haystream_stream_errors_total{"):
            if key.startswith(prefix):
                delta = report.after.metric(key) - report.baseline.metric(key)
                if delta:
                    counted[key.removeprefix(prefix).rstrip("}")] = int(delta)
    return Check("/metrics counted what clients saw", counted == seen, f"metrics {dict(counted)}; clients {dict(seen)}")


def summary(report: SoakReport) -> str:
    lines = [f"soak: {'PASS' if report.passed else 'FAIL'}"]
    lines += [f"  [{'ok' if c.passed else 'FAIL'}] {c.name}: {c.detail}" for c in report.checks]
    figures = report.figures()
    for key in ("seconds", "mixed_requests_per_second", "mixed_by_kind", "normal_ttft_ms", "burst_503_latency_ms"):
        lines.append(f"  {key}: {figures[key]}")
    lines += [f"  problem: {p}" for p in figures["problems"]]
    return "\n".join(lines)


def _parse_args(argv: Sequence[str]) -> tuple[SoakConfig, str]:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    defaults = SoakConfig()
    for item in dataclasses.fields(SoakConfig):
        value = getattr(defaults, item.name)
        parser.add_argument(f"--{item.name.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument("--output", default="bench/SOAK.md", help="where to write the figures; '-' for nowhere")
    args = vars(parser.parse_args(argv))
    output = args.pop("output")
    return SoakConfig(**args), output


def main(argv: Iterable[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    config, output = _parse_args(arguments)
    with tempfile.TemporaryDirectory(prefix="soak-") as logs:
        report = asyncio.run(run_soak(config, Path(logs)))
        print(summary(report))
        if not report.passed:
            print("service log (tail):\n" + (Path(logs) / "service.log").read_text()[-3000:])
    if output != "-":
        command = " ".join(["python", "-m", "bench.soak", *map(shlex.quote, arguments)])
        write_markdown(Path(output), command, report.passed, report.checks, report.figures())
        print(f"figures written to {output}")
    return 0 if report.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
