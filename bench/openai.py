"""The OpenAI-compatible endpoint beside POST /chat, and tracing on against off.

    python -m bench.openai                 # every scenario, about 2 minutes
    python -m bench.openai --only ttft cpu
    python -m bench.openai --quick         # the smoke run tests/test_bench.py does

Same stack and client as `bench/run.py` (the service and the demo upstream as subprocesses, pinned
as there). The routes are measured in the same service process, alternating in rounds, so drift on
a shared machine falls on both alike. Every stream's text is checked against the exact answer.

- `ttft`: 1 client, sequential 20-token answers: the time to first token each route adds over the
  upstream alone, and their difference.
- `request`: 1 client, sequential one-token answers: the service's CPU per request on each route.
- `cpu`: an instant upstream, 40 clients: the service's CPU per token on each route.
- `tracing`: 100 concurrent 2-second streams (5,000 tokens/s) with tracing off and on (OTLP/HTTP to a
  local collector stand-in that drops what it gets), CPU per token, each twice in turn.
"""

import argparse
import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bench.client import StreamResult, chat_request, stream
from bench.run import HOST, KEY, Running, Stack, Upstream, cpu_seconds, ms, pct, run_scenarios

ROUTES = ("upstream", "chat", "openai")
Pins = tuple[int | None, int | None]


def request(running: Running, route: str, n: int) -> tuple[int, bytes, bool]:
    """(port, request bytes, whether the answer is in OpenAI's format) for question `n` on `route`."""
    messages = [{"role": "user", "content": f"question {n}"}]
    if route == "upstream":
        body = {"model": "demo", "stream": True, "messages": messages}
        return running.upstream_port, chat_request(HOST, running.upstream_port, "/v1/chat/completions", body, KEY), True
    if route == "openai":
        body = {"model": "haystream-chat", "stream": True, "messages": messages}
        return running.service_port, chat_request(HOST, running.service_port, "/v1/chat/completions", body, KEY), True
    body = {"query": f"question {n}", "api_key": KEY}
    return running.service_port, chat_request(HOST, running.service_port, "/chat", body, KEY), False


async def load(running: Running, route: str, clients: int, requests: int, first: int = 0) -> list[StreamResult]:
    counter = iter(range(first, first + requests))
    results: list[StreamResult] = []

    async def loop(delay: float) -> None:
        await asyncio.sleep(delay)
        for n in counter:
            port, raw, openai_format = request(running, route, n)
            result = await stream(HOST, port, raw, upstream_format=openai_format)
            if result.error is None and result.text != running.expected(n):
                result.error = "inexact text"
            results.append(result)

    await asyncio.gather(*(loop(i * 2.0 / clients if clients > 1 else 0.0) for i in range(clients)))
    return results


def ttft(args: argparse.Namespace, pins: Pins) -> dict[str, Any]:
    rounds, per_round = (2, 10) if args.quick else (10, 30)
    samples: dict[str, list[float]] = {route: [] for route in ROUTES}
    errors = dict.fromkeys(ROUTES, 0)
    with Stack(Upstream(tokens=20, token_delay_ms=5)).run(pins) as running:
        for route in ROUTES:
            asyncio.run(load(running, route, 1, 10))  # warm-up
        for round_ in range(rounds):
            for route in ROUTES:
                results = asyncio.run(load(running, route, 1, per_round, round_ * per_round))
                samples[route] += [r.ttft for r in results if r.error is None and r.ttft is not None]
                errors[route] += sum(r.error is not None for r in results)
    out: dict[str, Any] = {
        route: {"ttft_p50_ms": ms(pct(samples[route], 50)), "ttft_p99_ms": ms(pct(samples[route], 99))}
        for route in ROUTES
    }
    for route in ("chat", "openai"):
        out[route]["added_ttft_p50_ms"] = round(out[route]["ttft_p50_ms"] - out["upstream"]["ttft_p50_ms"], 2)
    out["openai_minus_chat_added_p50_ms"] = round(
        out["openai"]["added_ttft_p50_ms"] - out["chat"]["added_ttft_p50_ms"], 2
    )
    out["errors"] = errors
    return out


def _cpu_per_token(running: Running, route: str, clients: int, requests: int, first: int) -> dict[str, float]:
    cpu0 = cpu_seconds(running.service_pid)
    start = time.perf_counter()
    results = asyncio.run(load(running, route, clients, requests, first))
    wall = time.perf_counter() - start
    cpu = cpu_seconds(running.service_pid) - cpu0
    exact = running.upstream.tokens * sum(r.error is None for r in results)
    return {
        "cpu_us_per_token": round(cpu / max(exact, 1) * 1e6, 1),
        "tokens_per_s": round(exact / wall),
        "errors": sum(r.error is not None for r in results),
    }


def cpu(args: argparse.Namespace, pins: Pins) -> dict[str, Any]:
    tokens, clients, requests = (200, 20, 40) if args.quick else (1000, 40, 200)
    out: dict[str, Any] = {"chat": [], "openai": []}
    stack = Stack(Upstream(tokens=tokens, token_delay_ms=0), {"HAYSTREAM_MAX_STREAMS": "400"})
    with stack.run(pins) as running:
        for route in ("chat", "openai"):
            asyncio.run(load(running, route, clients, 20))
        for round_ in range(1 if args.quick else 3):
            for route in ("chat", "openai"):
                out[route].append(_cpu_per_token(running, route, clients, requests, round_ * requests))
    best = {route: min(row["cpu_us_per_token"] for row in out[route]) for route in ("chat", "openai")}
    out["openai_over_chat_cpu_per_token"] = round(best["openai"] / best["chat"], 3)
    return out


def per_request(args: argparse.Namespace, pins: Pins) -> dict[str, Any]:
    requests = 50 if args.quick else 400
    out: dict[str, Any] = {"chat": [], "openai": []}
    with Stack(Upstream(tokens=1, token_delay_ms=0)).run(pins) as running:
        for route in ("chat", "openai"):
            asyncio.run(load(running, route, 1, 20))
        for round_ in range(1 if args.quick else 3):
            for route in ("chat", "openai"):
                row = _cpu_per_token(running, route, 1, requests, round_ * requests)
                out[route].append({"cpu_ms_per_request": round(row.pop("cpu_us_per_token") / 1000, 3), **row})
    best = {route: min(row["cpu_ms_per_request"] for row in out[route]) for route in ("chat", "openai")}
    out["openai_minus_chat_cpu_ms_per_request"] = round(best["openai"] - best["chat"], 3)
    return out


class _Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@contextlib.contextmanager
def otlp_sink() -> Iterator[str]:
    server = ThreadingHTTPServer((HOST, 0), _Sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def tracing(args: argparse.Namespace, pins: Pins) -> dict[str, Any]:
    clients, tokens = (20, 20) if args.quick else (100, 100)
    out: dict[str, Any] = {"off": [], "on": []}
    with otlp_sink() as endpoint:
        environments = {"off": {}, "on": {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_SERVICE_NAME": "bench"}}
        for _ in range(1 if args.quick else 2):
            for mode, env in environments.items():
                stack = Stack(Upstream(tokens=tokens, token_delay_ms=20), {"HAYSTREAM_MAX_STREAMS": "400"} | env)
                with stack.run(pins) as running:
                    asyncio.run(load(running, "chat", 10, 10))
                    out[mode].append(_cpu_per_token(running, "chat", clients, clients * 3, 0))
    best = {mode: min(row["cpu_us_per_token"] for row in out[mode]) for mode in ("off", "on")}
    out["on_over_off_cpu_per_token"] = round(best["on"] / best["off"], 3)
    return out


SCENARIOS = {"ttft": ttft, "request": per_request, "cpu": cpu, "tracing": tracing}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a small, fast smoke run")
    parser.add_argument("--only", nargs="*", choices=sorted(SCENARIOS), help="run only these scenarios")
    parser.add_argument("--json", help="also write the results to this file")
    return run_scenarios(SCENARIOS, parser.parse_args(argv))


if __name__ == "__main__":
    main()
