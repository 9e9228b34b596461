"""What the service's own per-token steps cost, from the streaming callback to the bytes a response sends.

    python -m bench.steps

The real chain, in one process, with no upstream and no socket: the run's `StreamBridge` (the
streaming callback) is called once per chunk; its hand-off (`run_coroutine_threadsafe`) puts the
chunk in the run's queue; the run's `HeldRun` writes the events (`ChunkCollector` into the
`EventLog`); an `EventStreamResponse` reads them and sends them to an ASGI `send` that only
counts. Each chunk is handed over only once the last one's frame was sent, so every chunk is its
own hand-off, event and write, as a token 20 ms after the last one is.

The callback is called from a coroutine on the loop's own thread rather than from a pool thread:
then the figure holds every step this service takes per token and none of the OS's thread wake-ups,
which no change to these steps moves and which make a threaded figure swing by +-20 % here. It is
the process's CPU per chunk, the minimum of the rounds; on a noisy machine it swings by +-15 % from
run to run, so the second figure is the number of function calls per chunk (cProfile's count, with
the chunk's own creation in it), which is the same on every machine and every run.
"""

import asyncio
import cProfile
import pstats
import statistics
import time
from collections.abc import MutableMapping
from typing import Any

import uvloop
from haystack.dataclasses import StreamingChunk

from service.errors import classify
from service.http.responses import EventStreamResponse
from service.streaming.collector import ChunkCollector, Finished
from service.streaming.event_log import EventLog
from service.streaming.held_run import HeldRun
from service.streaming.run import Admission
from service.upstream.pool import UpstreamPool

CHUNKS, ROUNDS = 5_000, 15


async def _one_round(chunks: int) -> float:
    admission = Admission(max_streams=10, upstream=UpstreamPool(1), queue_size=32)
    run = admission.admit()
    collector = ChunkCollector(run.queue, metadata={"run_id": run.id}, classify=classify, keepalive_interval=15.0)
    log = EventLog(run.id, max_events=100_000, max_bytes=64 << 20, window=32)
    held = HeldRun(run, collector, log, owner=b"", idempotency_key=None, grace=10.0, on_end=lambda _: None)
    held.start()
    frames = await held.open_reader(None)
    assert frames is not None
    sent = asyncio.Event()
    done = asyncio.get_running_loop().create_future()

    async def send(message: MutableMapping[str, Any]) -> None:
        if message.get("body"):
            sent.set()

    async def receive() -> dict[str, Any]:
        await done
        return {"type": "http.disconnect"}

    response = EventStreamResponse(frames.frames, frames.on_close)
    serving = asyncio.get_running_loop().create_task(response({"type": "http"}, receive, send))
    await sent.wait()  # the metadata event
    started = time.process_time()
    for n in range(chunks):
        sent.clear()
        run.bridge(StreamingChunk(content=f" token{n}"))
        await sent.wait()
    cpu = time.process_time() - started
    await run.queue.put(Finished({"finish_reason": "stop"}))
    await serving
    return cpu / chunks * 1e6


def main() -> dict[str, float]:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:  # the loop uvicorn runs the service on
        runner.run(_one_round(200))  # warm-up
        figures = [runner.run(_one_round(CHUNKS)) for _ in range(ROUNDS)]
        profile = cProfile.Profile()
        profile.enable()
        runner.run(_one_round(CHUNKS))
        profile.disable()
    calls = pstats.Stats(profile).total_calls / CHUNKS  # type: ignore[attr-defined]
    best = min(figures)
    print(f"{best:.1f} us of CPU per chunk (min of {ROUNDS} x {CHUNKS}; median {statistics.median(figures):.1f})")
    print(f"{calls:.1f} function calls per chunk (cProfile's count: the same on every machine)")
    return {"us_per_chunk": round(best, 1), "calls_per_chunk": round(calls, 1)}


if __name__ == "__main__":
    main()
