"""The overload scenario: more streams than one process can carry, and clients that do not retry.

200 clients arriving over 2 s share 400 requests of 100 tokens 20 ms apart (2 s streams): each
client sends its next request as soon as the last one ended, whether it streamed or got a 503, and
never sends a refused one again. Side by side, in one run: the upstream alone, the service admitting
by slots only (`HAYSTREAM_MAX_LOOP_LAG_MS` at its maximum, i.e. as before admission by capacity), and
the service admitting by measured capacity at each bound asked for (its default unless
`--loop-lag-ms` says). For each: how many were admitted and refused; for the admitted, TTFT, gap and
total p99; for the refused, the time to the 503 (p50, p99); tokens delivered per second and the
service's CPU per token. And, for each service side, `bench/probe.py` in a process of its own: a
`POST /chat` every 100 ms from the start of the ramp, timed to its status line, so the time to a
503 is also measured by a client whose own loop is not carrying 200 streams.
"""

import argparse
import asyncio
import json
import subprocess
import sys
import time
from typing import Any

from bench.client import StreamResult
from bench.run import SLOTS_ONLY, Running, Stack, Upstream, cpu_seconds, ms, pct, summarize
from service.settings import Settings

CLIENTS, REQUESTS, TOKENS, TOKEN_DELAY_MS, RAMP = 200, 400, 100, 20, 2.0
NO_BOUND = int(SLOTS_ONLY["HAYSTREAM_MAX_LOOP_LAG_MS"])  # its maximum


def run(args: argparse.Namespace, cpus: tuple[int | None, int | None]) -> dict[str, Any]:
    clients, requests, tokens = (20, 40, 20) if args.quick else (CLIENTS, REQUESTS, TOKENS)
    upstream = Upstream(tokens=tokens, token_delay_ms=TOKEN_DELAY_MS)
    bounds = args.loop_lag_ms or [Settings.model_fields["max_loop_lag_ms"].default]
    out: dict[str, Any] = {"clients": clients, "requests": requests, "tokens": tokens}
    for bound in [NO_BOUND, *bounds]:
        env = {"HAYSTREAM_MAX_STREAMS": str(requests), "HAYSTREAM_MAX_LOOP_LAG_MS": str(bound)}
        with Stack(upstream, env).run(cpus) as running:
            asyncio.run(running.load(10, 10, direct=False))  # warm up
            if "upstream" not in out:
                out["upstream"] = _side(running, clients, requests, direct=True)
            side = "service_slots_only" if bound == NO_BOUND else f"service_lag_{bound}ms"
            out[side] = _side(running, clients, requests, direct=False)
    return out


def _side(running: Running, clients: int, requests: int, direct: bool) -> dict[str, Any]:
    probe = None if direct else _probe(running.service_port, RAMP + 2.0)
    cpu = cpu_seconds(running.service_pid)
    start = time.perf_counter()
    results = asyncio.run(running.load(clients, requests, direct=direct, ramp=RAMP))
    wall = time.perf_counter() - start
    cpu = cpu_seconds(running.service_pid) - cpu
    row = _figures(results, running.upstream.tokens, wall, None if direct else cpu)
    if probe is not None:
        row |= _probed(json.loads(probe.communicate(timeout=120)[0]))
    return row


def _probe(port: int, seconds: float) -> subprocess.Popen[bytes]:
    """`bench/probe.py` in a process of its own, on the load client's CPU, from the start of the ramp."""
    return subprocess.Popen([sys.executable, "-m", "bench.probe", str(port), str(seconds)], stdout=subprocess.PIPE)


def _probed(answers: list[tuple[int, float]]) -> dict[str, Any]:
    """The probe's time to the status line, for its refusals and for its admitted requests."""
    refused = [took for status, took in answers if status == 503]
    admitted = [took for status, took in answers if status == 200]
    return {
        "probe_refused": len(refused),
        "probe_refused_p50_ms": ms(pct(refused, 50)),
        "probe_refused_p99_ms": ms(pct(refused, 99)),
        "probe_refused_max_ms": ms(max(refused, default=float("nan"))),
        "probe_admitted": len(admitted),
        "probe_admitted_p50_ms": ms(pct(admitted, 50)),
        "probe_admitted_p99_ms": ms(pct(admitted, 99)),
    }


def _figures(results: list[StreamResult], tokens: int, wall: float, cpu: float | None) -> dict[str, Any]:
    refused = [r for r in results if r.status == 503]
    admitted = summarize([r for r in results if r.status != 503])
    delivered = tokens * (admitted["requests"] - admitted["errors"])
    to_503 = [r.ttfb for r in refused if r.ttfb is not None]
    row: dict[str, Any] = {
        "admitted": admitted["requests"],
        "refused": len(refused),
        "errors": admitted["errors"],
        "error_kinds": admitted["error_kinds"],
        "ttft_p99_ms": admitted["ttft_p99_ms"],
        "gap_p99_ms": admitted["gap_p99_ms"],
        "stream_p99_ms": admitted["stream_p99_ms"],
        "refused_p50_ms": ms(pct(to_503, 50)),
        "refused_p99_ms": ms(pct(to_503, 99)),
        "tokens_per_s": round(delivered / wall),
        "wall_s": round(wall, 2),
    }
    if cpu is not None:
        row["cpu_us_per_token"] = round(cpu / max(delivered, 1) * 1e6, 1)
    return row
