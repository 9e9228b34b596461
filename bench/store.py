"""memory:// against redis:// side by side, in one run: what the shared store adds.

```sh
python -m bench.store            # about 2 minutes
python -m bench.store --quick
```

Starts its own `redis-server` (Debian's, on a free loopback port, nothing on disk) and, for each
store, the stack of `bench/run.py` (demo upstream + `python -m service`, pinned the same way):
the added time to first token at one client (200 sequential requests) and the service's CPU per
token at 100 concurrent streams (100 tokens, 20 ms apart). Redis runs unpinned, as a separate
server would; its own CPU is reported, not counted in the service's.
"""

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from bench.run import ALL_CPUS, Stack, Upstream, _client_on, _free_port, _pin, both, cpu_seconds, machine, write_json

Pins = tuple[int | None, int | None]


@contextlib.contextmanager
def redis_server() -> Iterator[tuple[str, int]]:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = _free_port()
    workdir = tempfile.mkdtemp(prefix="haystream-bench-redis-")
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen([*command, "--dir", workdir], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while not _pong(port):
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0", process.pid
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def _pong(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def ttft(store: str, pins: Pins, requests: int) -> dict[str, Any]:
    with Stack(Upstream(tokens=20, token_delay_ms=5), {"HAYSTREAM_STORE_URL": store}).run(pins) as running:
        asyncio.run(running.load(1, 20, direct=False))
        out = asyncio.run(both(running, 1, requests))
    return {
        "service_ttft_p50_ms": out["service"]["ttft_p50_ms"],
        "upstream_ttft_p50_ms": out["upstream"]["ttft_p50_ms"],
    }


def streams(store: str, pins: Pins, clients: int, tokens: int, redis_pid: int | None) -> dict[str, Any]:
    env = {"HAYSTREAM_STORE_URL": store, "HAYSTREAM_MAX_STREAMS": "400"}
    with Stack(Upstream(tokens=tokens, token_delay_ms=20), env).run(pins) as running:
        asyncio.run(running.load(10, 10, direct=False))
        redis_before = cpu_seconds(redis_pid) if redis_pid else 0.0
        out = asyncio.run(both(running, clients, clients * 3, ramp=2.0))
        redis_cpu = cpu_seconds(redis_pid) - redis_before if redis_pid else 0.0
    service = out["service"]
    delivered = tokens * (service["requests"] - service["errors"])
    result = {key: service[key] for key in ("cpu_us_per_token", "errors", "gap_p99_ms", "stream_p99_ms")}
    if redis_pid:
        result["redis_cpu_us_per_token"] = round(redis_cpu / max(delivered, 1) * 1e6, 1)
    return result


def throughput(store: str, pins: Pins, workers: int, quick: bool) -> dict[str, Any]:
    """An instant upstream (1,000-token answers), 40 clients: tokens per second through the service.
    With 2 workers nothing is pinned (as in bench/run.py's throughput scenario)."""
    tokens, clients, requests = (200, 20, 40) if quick else (1000, 40, 200)
    env = {"HAYSTREAM_STORE_URL": store, "HAYSTREAM_MAX_STREAMS": "400"}
    stack = Stack(Upstream(tokens=tokens, token_delay_ms=0), env, workers)
    with stack.run(pins if workers == 1 else (None, None)) as running, _client_on(ALL_CPUS if workers > 1 else None):
        asyncio.run(running.load(clients, 20, direct=False))
        started = time.perf_counter()
        results = asyncio.run(running.load(clients, requests, direct=False))
        wall = time.perf_counter() - started
    exact = sum(tokens for result in results if result.error is None)
    return {"tokens_per_s": round(exact / wall), "errors": sum(result.error is not None for result in results)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    pins: Pins = (ALL_CPUS[0], ALL_CPUS[1]) if len(ALL_CPUS) >= 2 else (None, None)
    if pins[1] is not None:
        _pin(os.getpid(), pins[1])
    results: dict[str, Any] = {"machine": machine(pins)}
    requests, clients, tokens = (20, 20, 20) if args.quick else (200, 100, 100)
    with redis_server() as (url, redis_pid):
        for name, store, pid in (("memory", "memory://", None), ("redis", url, redis_pid)):
            results[name] = {"ttft1": ttft(store, pins, requests), "c100": streams(store, pins, clients, tokens, pid)}
            print(json.dumps({name: results[name]}), flush=True)
        results["throughput"] = {
            "memory_1w": throughput("memory://", pins, 1, args.quick),
            "redis_1w": throughput(url, pins, 1, args.quick),
            "redis_2w": throughput(url, pins, 2, args.quick),
        }
        print(json.dumps({"throughput": results["throughput"]}), flush=True)
    memory, redis = results["memory"], results["redis"]
    results["redis_adds"] = {
        "ttft_p50_ms": round(redis["ttft1"]["service_ttft_p50_ms"] - memory["ttft1"]["service_ttft_p50_ms"], 2),
        "cpu_per_token_pct": round(
            (redis["c100"]["cpu_us_per_token"] / memory["c100"]["cpu_us_per_token"] - 1) * 100, 1
        ),
    }
    print(json.dumps({"redis_adds": results["redis_adds"]}), flush=True)
    write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
