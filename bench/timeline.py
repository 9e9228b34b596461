"""Where one request's first token waits: a timeline of its steps, at one client.

    python -m bench.timeline               # 200 sequential requests, the median of each step

The service runs in this process (under uvicorn, uvloop and httptools, as `python -m service`
runs it) with probes patched onto the functions each step goes through; each probe records
`time.perf_counter()` the first time it fires for the request in flight. The upstream
(`python -m service.demo_model`, 20 tokens 5 ms apart, as in the `ttft1` scenario) is a
subprocess; the client is a thread of this process with a blocking socket, so it holds the GIL
only to send and to read. On two or more CPUs this process is pinned to CPU 0 and the upstream to
CPU 1. The figures are offsets from the moment the client wrote its request, and the step each
adds; they show where the wait is, not what `ttft1` measures from outside.
"""

import asyncio
import contextlib
import functools
import http.client
import json
import os
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn
from haystack.components.generators import OpenAIGenerator

import service.serving
from bench.run import HOST, KEY, Upstream, _free_port, _pin, process
from service.answering.answers import prepare
from service.app import create_app
from service.settings import Settings
from service.streaming.bridge import StreamBridge
from service.streaming.event_log import EventLog
from service.streaming.run import Admission, Run

marks: dict[str, float] = {}


def mark(name: str) -> None:
    marks.setdefault(name, time.perf_counter())


def _after(owner: Any, name: str, step: str) -> None:
    original = getattr(owner, name)

    @functools.wraps(original)
    def probe(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        mark(step)
        return result

    setattr(owner, name, probe)


def _before(owner: Any, name: str, step: str) -> None:
    original = getattr(owner, name)

    @functools.wraps(original)
    def probe(*args: Any, **kwargs: Any) -> Any:
        mark(step)
        return original(*args, **kwargs)

    setattr(owner, name, probe)


def install() -> None:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    _before(HttpToolsProtocol, "data_received", "request bytes read by the loop")
    _after(Admission, "admit", "admitted")

    async def prepared(*args: Any, **kwargs: Any) -> Any:
        answer = await prepare(*args, **kwargs)
        mark("prepared (answering)")
        return answer

    setattr(service.serving, "prepare", prepared)  # noqa: B010 (mypy: not an exported name)
    _after(Run, "start", "pipeline built, its task created")
    _before(OpenAIGenerator, "run", "generator running (pool thread)")
    _after(http.client.HTTPConnection, "endheaders", "upstream request written")
    _after(http.client.HTTPConnection, "getresponse", "upstream headers read")
    _after(http.client.HTTPResponse, "read1", "first upstream body read")
    _before(StreamBridge, "__call__", "first chunk callback (thread)")
    hand_off = StreamBridge._hand_off

    async def handed(self: StreamBridge, batch: Any) -> None:
        mark("hand-off running on the loop")
        await hand_off(self, batch)

    StreamBridge._hand_off = handed  # type: ignore[method-assign]
    append = EventLog.append

    def appended(self: EventLog, event: Any) -> None:
        append(self, event)
        if event.name == "data":
            mark("first data event in the log")

    EventLog.append = appended  # type: ignore[method-assign]


def traced(app: Callable[..., Any]) -> Callable[..., Any]:
    async def wrapper(scope: Any, receive: Any, send: Any) -> None:
        mark("ASGI app called")

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                mark("response headers sent")
            elif b"event: data" in message.get("body", b""):
                mark("first data frame sent")
            await send(message)

        await app(scope, receive, sending)

    return wrapper


def client(port: int, requests: int, out: list[dict[str, float]], ready: threading.Event) -> None:
    ready.wait()
    body = json.dumps({"query": "question", "api_key": KEY}).encode()
    head = (
        f"POST /chat HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
        f"Accept: text/event-stream\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    for n in range(requests + 20):
        with socket.create_connection((HOST, port)) as sock:
            marks.clear()
            start = time.perf_counter()
            sock.sendall(head + body)
            received = b""
            while b"event: data" not in received:
                received += sock.recv(65536)
            first = time.perf_counter()
            while not received.endswith(b"0\r\n\r\n"):
                received += sock.recv(65536)
        if n >= 20:  # after a warm-up
            out.append(
                {step: at - start for step, at in marks.items()} | {"first data bytes at the client": first - start}
            )
        time.sleep(0.01)


def main(requests: int = 200) -> dict[str, Any]:
    cpus = sorted(os.sched_getaffinity(0))
    pins = (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)
    up, port = _free_port(), _free_port()
    upstream = Upstream(tokens=20, token_delay_ms=5)
    command = [sys.executable, "-m", "service.demo_model", "--host", HOST, "--port", str(up)]
    command += [
        "--tokens",
        str(upstream.tokens),
        "--token-delay-ms",
        str(upstream.token_delay_ms),
        "--first-token-ms",
        "0",
    ]
    with process(command, {}, pins[1], f"http://{HOST}:{up}/health"):
        if pins[0] is not None:
            _pin(os.getpid(), pins[0])
        install()
        settings = Settings(base_url=f"http://{HOST}:{up}/v1", model="demo", log_level="warning")
        app = traced(create_app(settings))
        config = uvicorn.Config(app, host=HOST, port=port, log_level="warning", lifespan="on")
        server = uvicorn.Server(config)
        results: list[dict[str, float]] = []
        ready = threading.Event()
        thread = threading.Thread(target=client, args=(port, requests, results, ready))
        thread.start()
        with _stopping(server, thread):
            asyncio.run(_serve(server, ready))
    return report(results)


async def _serve(server: uvicorn.Server, ready: threading.Event) -> None:
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    ready.set()
    await task


@contextlib.contextmanager
def _stopping(server: uvicorn.Server, thread: threading.Thread) -> Iterator[None]:
    def stop_when_done() -> None:
        thread.join()
        server.should_exit = True

    threading.Thread(target=stop_when_done).start()
    yield


def report(results: list[dict[str, float]]) -> dict[str, Any]:
    steps = sorted(results[0], key=lambda step: statistics.median(r[step] for r in results if step in r))
    rows, previous = [], 0.0
    for step in steps:
        at = statistics.median(r[step] for r in results if step in r) * 1000
        rows.append({"step": step, "at_ms": round(at, 3), "adds_ms": round(at - previous, 3)})
        previous = at
    for row in rows:
        print(f"{row['at_ms']:8.3f} ms  (+{row['adds_ms']:6.3f})  {row['step']}")
    return {"requests": len(results), "steps": rows}


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
