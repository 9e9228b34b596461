"""The benchmark: the service and the upstream alone, measured in the same run, with ratios.

    python -m bench.run                 # every scenario, a few minutes
    python -m bench.run --quick         # a smoke run (the test suite runs this)
    python -m bench.run --only c200 throughput
    python -m bench.run --only overload --loop-lag-ms 10 20

Processes: the upstream (`python -m service.demo_model`) and the service (`python -m service`, one
uvicorn worker unless a scenario says otherwise) are subprocesses; the load client is this process.
On a machine with two or more CPUs the service is pinned to CPU 0 and the upstream and this client to
CPU 1 (`os.sched_setaffinity`), so the service's figures are not mixed with its load's.
"""

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.client import StreamResult, chat_request, stream
from service.demo_model import Behaviour, DemoModelServer, expected_text

HOST = "127.0.0.1"
KEY = "sk-bench"
# Every scenario but `overload` admits by slots only, as before admission by loop lag, so that its
# figures stay comparable with earlier rounds' and a saturating scenario is not cut short by 503s.
SLOTS_ONLY = {"HAYSTREAM_MAX_LOOP_LAG_MS": "10000"}


@dataclass
class Upstream:
    tokens: int
    token_delay_ms: float
    first_token_ms: float = 0.0


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


# The CPUs this run may use, taken before main() pins this process to one of them.
ALL_CPUS = sorted(os.sched_getaffinity(0))


def _pin(pid: int, cpu: int | None) -> None:
    """To one CPU, or (None) to all of them: a child starts with this process's affinity, not all CPUs."""
    os.sched_setaffinity(pid, {cpu} if cpu is not None else ALL_CPUS)


@contextlib.contextmanager
def process(
    command: list[str], env: dict[str, str], cpu: int | None, ready_url: str
) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(command, env=os.environ | env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _pin(proc.pid, cpu)
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(ready_url, timeout=1).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{command[2]} did not start")
            time.sleep(0.05)
        for child in _children(proc.pid):
            _pin(child, cpu)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(child) for child in handle.read().split()]
    except OSError:
        return []


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children (uvicorn workers)."""
    return sum(_stat_cpu(f"/proc/{each}/stat") for each in [pid, *_children(pid)])


def loop_cpu_seconds(pid: int) -> float:
    """User + system CPU of a one-worker service's main thread: its event loop (the rest is pool threads)."""
    return _stat_cpu(f"/proc/{pid}/task/{pid}/stat")


def _stat_cpu(path: str) -> float:
    with contextlib.suppress(OSError):
        with open(path) as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


@dataclass
class Stack:
    """An upstream, and the service in front of it."""

    upstream: Upstream
    service_env: dict[str, str] = field(default_factory=dict)
    workers: int = 1

    @contextlib.contextmanager
    def run(self, cpus: tuple[int | None, int | None]) -> Iterator["Running"]:
        up_port, svc_port = _free_port(), _free_port()
        up = self.upstream
        up_cmd = [sys.executable, "-m", "service.demo_model", "--host", HOST, "--port", str(up_port)]
        up_cmd += ["--tokens", str(up.tokens), "--token-delay-ms", str(up.token_delay_ms)]
        up_cmd += ["--first-token-ms", str(up.first_token_ms)]
        svc_cmd = [sys.executable, "-m", "service", "--host", HOST, "--port", str(svc_port)]
        svc_cmd += ["--workers", str(self.workers), "--log-level", "warning"]
        env = {"HAYSTREAM_BASE_URL": f"http://{HOST}:{up_port}/v1", "HAYSTREAM_MODEL": "demo"}
        env |= SLOTS_ONLY | self.service_env
        with (
            process(up_cmd, {}, cpus[1], f"http://{HOST}:{up_port}/health") as upstream,
            process(svc_cmd, env, cpus[0], f"http://{HOST}:{svc_port}/healthz") as service,
        ):
            yield Running(up_port, svc_port, upstream.pid, service.pid, self.upstream)


@dataclass
class Running:
    upstream_port: int
    service_port: int
    upstream_pid: int
    service_pid: int
    upstream: Upstream

    def request(self, n: int, direct: bool, port: int | None = None) -> bytes:
        body: dict[str, object] = {"query": f"question {n}"}
        if direct:
            body = {"model": "demo", "stream": True, "messages": [{"role": "user", "content": f"question {n}"}]}
            return chat_request(HOST, self.upstream_port, "/v1/chat/completions", body, KEY)
        return chat_request(HOST, port or self.service_port, "/chat", body | {"api_key": KEY}, KEY)

    def expected(self, n: int) -> str:
        return expected_text(f"question {n}", Behaviour(tokens=self.upstream.tokens))

    async def load(
        self,
        clients: int,
        requests: int,
        direct: bool,
        *,
        leave_after: int | None = None,
        ramp: float = 0.0,
        port: int | None = None,
    ) -> list[StreamResult]:
        """`clients` concurrent loops sharing `requests` requests; each result checked for exact text.

        With `ramp`, client i starts i * ramp / clients seconds in, as arrivals spread out in practice;
        without, all start at once (a burst). `port`: another server speaking the service's /chat (the relay).
        """
        port = self.upstream_port if direct else port or self.service_port
        counter = iter(range(requests))
        results: list[StreamResult] = []

        async def loop(delay: float) -> None:
            await asyncio.sleep(delay)
            for n in counter:
                request = self.request(n, direct, port)
                result = await stream(HOST, port, request, upstream_format=direct, leave_after=leave_after)
                if leave_after is None and result.error is None and result.text != self.expected(n):
                    result.error = "inexact text"
                results.append(result)

        await asyncio.gather(*(loop(i * ramp / clients) for i in range(clients)))
        return results


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def ms(value: float) -> float:
    return round(value * 1000, 2)


def summarize(results: list[StreamResult]) -> dict[str, Any]:
    ok = [r for r in results if r.error is None]
    ttft = [r.ttft for r in ok if r.ttft is not None]
    total = [r.total for r in ok if r.total is not None]
    gaps = [gap for r in ok for gap in r.gaps()]
    return {
        "requests": len(results),
        "errors": len(results) - len(ok),
        "error_kinds": sorted({(r.error or "")[:60] for r in results if r.error}),
        "ttfb_p50_ms": ms(pct([r.ttfb for r in ok if r.ttfb is not None], 50)),
        "ttft_p50_ms": ms(pct(ttft, 50)),
        "ttft_p99_ms": ms(pct(ttft, 99)),
        "stream_p50_ms": ms(pct(total, 50)),
        "stream_p99_ms": ms(pct(total, 99)),
        "gap_p50_ms": ms(pct(gaps, 50)),
        "gap_p99_ms": ms(pct(gaps, 99)),
    }


async def both(running: Running, clients: int, requests: int, ramp: float = 0.0) -> dict[str, Any]:
    direct = summarize(await running.load(clients, requests, direct=True, ramp=ramp))
    pid = running.service_pid
    cpu, loop, collections = cpu_seconds(pid), loop_cpu_seconds(pid), gc_collections(running.service_port)
    results = await running.load(clients, requests, direct=False, ramp=ramp)
    cpu, loop = cpu_seconds(pid) - cpu, loop_cpu_seconds(pid) - loop
    service = summarize(results)
    tokens = running.upstream.tokens * (service["requests"] - service["errors"])
    service["cpu_us_per_token"] = round(cpu / max(tokens, 1) * 1e6, 1)
    service["loop_cpu_share"] = round(loop / cpu, 2) if cpu else None
    after = gc_collections(running.service_port)
    service["gc_collections"] = {generation: after[generation] - collections.get(generation, 0) for generation in after}
    return {"upstream": direct, "service": service}


def gc_collections(port: int) -> dict[str, int]:
    """The service's garbage collections so far, by generation, from its /metrics."""
    text = httpx.get(f"http://{HOST}:{port}/metrics", timeout=10).text
    counts = {}
    for line in text.splitlines():
        if line.startswith('python_gc_collections_total{generation="'):
            name, value = line.rsplit(" ", 1)
            counts[name.split('"')[1]] = int(float(value))
    return counts


Scenario = Callable[[argparse.Namespace, tuple[int | None, int | None]], dict[str, Any]]
SCENARIOS: dict[str, Scenario] = {}


def scenario(name: str) -> Callable[[Scenario], Scenario]:
    def register(func: Scenario) -> Scenario:
        SCENARIOS[name] = func
        return func

    return register


def _one_client(cpus: tuple[int | None, int | None], upstream: Upstream, requests: int) -> dict[str, Any]:
    """1 client, sequential requests, after a short warm-up; the bare relay (`bench/relay.py`) too, on the
    service's CPU, with the same client, the same upstream, in the same run."""
    with Stack(upstream).run(cpus) as running:
        asyncio.run(running.load(1, 20, direct=False))
        out = asyncio.run(both(running, 1, requests))
        for client in ("shared", "per-request"):
            with relay(running.upstream_port, cpus[0], client) as (port, pid):
                asyncio.run(running.load(1, 20, direct=False, port=port))
                cpu = cpu_seconds(pid)
                side = summarize(asyncio.run(running.load(1, requests, direct=False, port=port)))
                tokens = upstream.tokens * (side["requests"] - side["errors"])
                side["cpu_us_per_token"] = round((cpu_seconds(pid) - cpu) / max(tokens, 1) * 1e6, 1)
                out[f"relay_{client}"] = side
        return out


@contextlib.contextmanager
def relay(upstream_port: int, cpu: int | None, client: str) -> Iterator[tuple[int, int]]:
    """The bare relay (`bench/relay.py`) in front of the upstream: its port and pid."""
    port = _free_port()
    command = [sys.executable, "-m", "bench.relay", "--host", HOST, "--port", str(port), "--client", client]
    command += ["--base-url", f"http://{HOST}:{upstream_port}/v1", "--model", "demo"]
    with process(command, {}, cpu, f"http://{HOST}:{port}/healthz") as proc:
        yield port, proc.pid


@scenario("ttft1")
def ttft_one_client(args: argparse.Namespace, cpus: tuple[int | None, int | None]) -> dict[str, Any]:
    """1 client, sequential requests: the time to first token the service adds."""
    out = _one_client(cpus, Upstream(tokens=20, token_delay_ms=5), 20 if args.quick else 200)
    out["added_ttft_p50_ms"] = round(out["service"]["ttft_p50_ms"] - out["upstream"]["ttft_p50_ms"], 2)
    for client in ("shared", "per-request"):
        added = out[f"relay_{client}"]["ttft_p50_ms"] - out["upstream"]["ttft_p50_ms"]
        out[f"relay_{client}_added_ttft_p50_ms"] = round(added, 2)
    return out


@scenario("request")
def per_request(args: argparse.Namespace, cpus: tuple[int | None, int | None]) -> dict[str, Any]:
    """1 client, sequential one-token answers: what a request costs the service, apart from its tokens."""
    out = _one_client(cpus, Upstream(tokens=1, token_delay_ms=0), 50 if args.quick else 1000)
    for side in (out["service"], out["relay_shared"], out["relay_per-request"]):
        side["cpu_ms_per_request"] = round(side.pop("cpu_us_per_token") / 1000, 3)  # one token each
    return out


def _concurrent(
    args: argparse.Namespace, cpus: tuple[int | None, int | None], ramp: float, clients: int = 200
) -> dict[str, Any]:
    clients = 20 if args.quick else clients
    tokens = 20 if args.quick else 100
    with Stack(Upstream(tokens=tokens, token_delay_ms=20), {"HAYSTREAM_MAX_STREAMS": "400"}).run(cpus) as running:
        asyncio.run(running.load(10, 10, direct=False))
        out = asyncio.run(both(running, clients, clients * 3, ramp=ramp))
    up, svc = out["upstream"], out["service"]
    out["stream_p99_ratio"] = round(svc["stream_p99_ms"] / up["stream_p99_ms"], 3)
    out["gap_p99_added_ms"] = round(svc["gap_p99_ms"] - up["gap_p99_ms"], 2)
    return out


@scenario("c100")
def half_the_streams(args: argparse.Namespace, cpus: tuple[int | None, int | None]) -> dict[str, Any]:
    """The same streams with 100 clients (5,000 tokens/s): where one CPU still keeps up."""
    return _concurrent(args, cpus, ramp=2.0, clients=100)


@scenario("c200")
def concurrent_streams(args: argparse.Namespace, cpus: tuple[int | None, int | None]) -> dict[str, Any]:
    """200 concurrent clients on 2-second streams (100 tokens, 20 ms apart), arriving over 2 s."""
    return _concurrent(args, cpus, ramp=2.0)


@scenario("c200burst")
def concurrent_burst(args: argparse.Namespace, cpus: tuple[int | None, int | None]) -> dict[str, Any]:
    """The same, with all 200 clients starting in the same instant."""
    return _concurrent(args, cpus, ramp=0.0)


@scenario("throughput")
def throughput(args: argparse.Namespace, cpus: tuple[int | None, int | None]) -> dict[str, Any]:
    """An instant upstream: tokens per second through one process, and the service's CPU per token.

    With 2 workers nothing is pinned, this client included: the workers get every CPU, as a 2-worker
    deployment would, and a client pinned to a CPU a busy worker shares answers late and starves both.
    """
    out: dict[str, Any] = {}
    for workers in (1,) if args.quick else (1, 2):
        tokens = 200 if args.quick else 1000
        clients, requests = (20, 40) if args.quick else (40, 400)
        stack = Stack(Upstream(tokens=tokens, token_delay_ms=0), {"HAYSTREAM_MAX_STREAMS": "400"}, workers)
        pin = cpus if workers == 1 else (None, None)
        with stack.run(pin) as running, _client_on(ALL_CPUS if workers > 1 else None):
            asyncio.run(running.load(clients, 20, direct=False))
            for direct in (True, False):
                cpu0 = cpu_seconds(running.service_pid)
                start = time.perf_counter()
                results = asyncio.run(running.load(clients, requests, direct=direct))
                wall = time.perf_counter() - start
                cpu = cpu_seconds(running.service_pid) - cpu0
                exact = sum(tokens for r in results if r.error is None)
                row: dict[str, float] = {"tokens_exact": exact, "errors": sum(r.error is not None for r in results)}
                row["tokens_per_s"] = round(exact / wall)
                if not direct:
                    row["service_cpu_us_per_token"] = round(cpu / max(exact, 1) * 1e6, 1)
                    row["service_cpus_busy"] = round(cpu / wall, 2)
                    row["events_per_request"] = round(statistics.mean(len(r.token_times) for r in results), 1)
                out[f"{workers}w_{'upstream' if direct else 'service'}"] = row
    if "2w_service" in out:
        out["2w_over_1w"] = round(out["2w_service"]["tokens_per_s"] / out["1w_service"]["tokens_per_s"], 2)
    return out


@scenario("overload")
def overload(args: argparse.Namespace, cpus: tuple[int | None, int | None]) -> dict[str, Any]:
    """200 clients that do not retry, 400 2-second streams: admitted and refused, by slots and by capacity."""
    from bench import overload  # (bench/overload.py builds on this module's Stack)

    return overload.run(args, cpus)


@contextlib.contextmanager
def _client_on(cpus: list[int] | None) -> Iterator[None]:
    """Run this process (the load client) on `cpus` for a while (None: leave it where it is)."""
    before = os.sched_getaffinity(0)
    if cpus is not None:
        os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


@scenario("memory")
def memory(args: argparse.Namespace, cpus: tuple[int | None, int | None]) -> dict[str, Any]:
    """RSS and threads per concurrent stream above the idle baseline."""
    streams = 20 if args.quick else 200
    upstream = Upstream(tokens=400, token_delay_ms=50, first_token_ms=0)
    with Stack(upstream, {"HAYSTREAM_MAX_STREAMS": "400"}).run(cpus) as running:
        asyncio.run(running.load(20, 40, direct=False, leave_after=1))  # warm up the pools and the code
        idle_rss, idle_threads = rss_kib(running.service_pid), threads(running.service_pid)

        async def hold() -> tuple[int, int]:
            port = running.service_port
            requests = [running.request(n, False) for n in range(streams)]
            tasks = [asyncio.ensure_future(stream(HOST, port, r, upstream_format=False)) for r in requests]
            await _until_streams(running.service_port, streams)
            await asyncio.sleep(1)  # let every stream flow for a while before sampling
            sample = rss_kib(running.service_pid), threads(running.service_pid)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            return sample

        busy_rss, busy_threads = asyncio.run(hold())
    return {
        "streams": streams,
        "idle_rss_mib": round(idle_rss / 1024, 1),
        "busy_rss_mib": round(busy_rss / 1024, 1),
        "rss_kib_per_stream": round((busy_rss - idle_rss) / streams, 1),
        "idle_threads": idle_threads,
        "busy_threads": busy_threads,
    }


async def _until_streams(port: int, streams: int) -> None:
    """Poll /readyz (for at most 30 s) until the service holds `streams` streams."""
    async with asyncio.timeout(30), httpx.AsyncClient(base_url=f"http://{HOST}:{port}") as client:
        while (await client.get("/readyz")).json().get("active_streams", 0) < streams:
            await asyncio.sleep(0.05)


@scenario("disconnect")
def disconnect(args: argparse.Namespace, cpus: tuple[int | None, int | None]) -> dict[str, Any]:
    """Clients leave after 3 tokens: how long until the upstream sees its connection closed."""
    clients = 10 if args.quick else 50
    server = DemoModelServer(behaviour=Behaviour(tokens=500, token_delay=0.02, first_token_delay=0))
    with server:
        port = _free_port()
        cmd = [sys.executable, "-m", "service", "--host", HOST, "--port", str(port), "--log-level", "warning"]
        env = {"HAYSTREAM_BASE_URL": server.base_url, "HAYSTREAM_MODEL": "demo"} | SLOTS_ONLY
        with process(cmd, env, cpus[0], f"http://{HOST}:{port}/healthz"):
            body = json.dumps({"query": "q", "api_key": KEY})
            request = chat_request(HOST, port, "/chat", json.loads(body), KEY)

            async def leave_all() -> list[StreamResult]:
                return list(
                    await asyncio.gather(
                        *(stream(HOST, port, request, upstream_format=False, leave_after=3) for _ in range(clients))
                    )
                )

            results = asyncio.run(leave_all())
            records = server.wait_for_requests(clients, timeout=10)
            for record in records:
                record.closed.wait(5)
    # Match each client with its upstream request in order of leaving: compare the sorted times.
    left = sorted(r.closed_at for r in results if r.closed_at is not None)
    closed = sorted(r.closed_at for r in records if r.closed_at is not None)
    delays = [gone - left_at for left_at, gone in zip(left, closed, strict=False)]
    return {
        "clients": clients,
        "upstream_closed": sum(r.client_gone for r in records),
        "upstream_completed": sum(r.completed for r in records),
        "close_delay_p50_ms": ms(pct(delays, 50)),
        "close_delay_max_ms": ms(max(delays)) if delays else None,
    }


@contextlib.contextmanager
def _fresh_service(server: DemoModelServer, cpu: int | None) -> Iterator[int]:
    """A new `python -m service` in front of `server`, once it says it is ready; its port."""
    port = _free_port()
    cmd = [sys.executable, "-m", "service", "--host", HOST, "--port", str(port), "--log-level", "warning"]
    env = {"HAYSTREAM_BASE_URL": server.base_url, "HAYSTREAM_MODEL": "demo"}
    with process(cmd, env, cpu, f"http://{HOST}:{port}/readyz"):
        yield port


def _ttfts(port: int, clients: int, n: int) -> list[float]:
    """`clients` requests at once (a burst; 1: a single request), each one's time to first token."""
    request = chat_request(HOST, port, "/chat", {"query": f"question {n}", "api_key": KEY}, KEY)

    async def burst() -> list[StreamResult]:
        return list(await asyncio.gather(*(stream(HOST, port, request, upstream_format=False) for _ in range(clients))))

    results = asyncio.run(burst())
    if any(r.error is not None or r.ttft is None for r in results):
        raise RuntimeError(f"a cold-start request failed: {sorted({str(r.error) for r in results})}")
    return [r.ttft or 0.0 for r in results]


@scenario("cold")
def cold_start(args: argparse.Namespace, cpus: tuple[int | None, int | None]) -> dict[str, Any]:
    """A fresh service process each time: its first answer's time to first token against later ones',
    and a burst of clients as the first thing it serves against a burst later on.

    The upstream takes the demo model's 0.3 s to its first token, as `make run` does."""
    starts, later, clients = (2, 3, 10) if args.quick else (5, 5, 50)
    server = DemoModelServer(behaviour=Behaviour(tokens=20, token_delay=0.005, first_token_delay=0.3))
    firsts: list[float] = []
    nexts: list[float] = []
    first_bursts: list[float] = []
    later_bursts: list[float] = []
    with server:
        for n in range(starts):
            with _fresh_service(server, cpus[0]) as port:
                firsts += _ttfts(port, 1, n)
                for _ in range(later):
                    nexts += _ttfts(port, 1, n)
            with _fresh_service(server, cpus[0]) as port:
                first_bursts += _ttfts(port, clients, n)
                later_bursts += _ttfts(port, clients, n)
    first, next_ = statistics.median(firsts), statistics.median(nexts)
    return {
        "starts": starts,
        "first_ttft_ms": [ms(value) for value in firsts],
        "first_ttft_p50_ms": ms(first),
        "later_ttft_p50_ms": ms(next_),
        "first_added_ms": ms(first - next_),
        "first_to_later_ratio": round(first / next_, 2),
        "burst_clients": clients,
        "first_burst_ttft_p99_ms": ms(pct(first_bursts, 99)),
        "later_burst_ttft_p99_ms": ms(pct(later_bursts, 99)),
    }


def machine(pins: tuple[int | None, int | None]) -> dict[str, Any]:
    return {
        "date": time.strftime("%Y-%m-%d"),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "pinned": "service on CPU 0, upstream and client on CPU 1" if pins[1] is not None else "not pinned",
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a small, fast smoke run")
    parser.add_argument("--only", nargs="*", choices=sorted(SCENARIOS), help="run only these scenarios")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument(
        "--loop-lag-ms", nargs="*", type=int, help="overload: the HAYSTREAM_MAX_LOOP_LAG_MS bounds to compare"
    )
    return run_scenarios(SCENARIOS, parser.parse_args(argv))


def run_scenarios(scenarios: Mapping[str, Scenario], args: argparse.Namespace) -> dict[str, Any]:
    """Pin this process (the load client) beside the upstream, run `args.only` (or every scenario),
    print each result as it comes, and write them all to `args.json` when given."""
    pins: tuple[int | None, int | None] = (ALL_CPUS[0], ALL_CPUS[1]) if len(ALL_CPUS) >= 2 else (None, None)
    if pins[1] is not None:
        _pin(os.getpid(), pins[1])
    results: dict[str, Any] = {"machine": machine(pins)}
    for name in args.only or scenarios:
        started = time.perf_counter()
        results[name] = scenarios[name](args, pins)
        results[name]["seconds"] = round(time.perf_counter() - started, 1)
        print(json.dumps({name: results[name]}, indent=1), flush=True)
    write_json(args.json, results)
    return results


def write_json(path: str | None, results: dict[str, Any]) -> None:
    if path:
        with open(path, "w") as handle:
            json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()
