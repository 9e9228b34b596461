"""What one read of a streamed answer costs the worker thread: httpx's own transport against the service's.

    python -m bench.transport

The upstream (`service.demo_model`, its own process, on another CPU when there is one) sends 500
tokens 1 ms apart, so every token is one read of the socket, as in the many-slow-streams regime. The
reading thread's CPU clock (`time.thread_time`, the `recv` system call included) is divided by the
tokens read; best of 9 answers. Two layers, each with httpx's `HTTPTransport` (httpcore and h11) and
with the service's `HTTP11Transport` (`service/upstream/http11.py`): the raw body (`iter_raw`), and the whole
`OpenAIGenerator.run` the service runs (the SDK's parse and Haystack's chunk on top).
"""

import sys
import time
from collections.abc import Callable

import httpx

from bench.run import ALL_CPUS, HOST, KEY, _free_port, _pin, process
from pipelines.generator import build_generator
from service.upstream.http11 import HTTP11Transport

TOKENS = 500
BODY = {"model": "demo", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


def _per_token(read: Callable[[], None], tokens: int) -> float:
    read()  # warm: a connection in the pool, the code paths loaded
    best = float("inf")
    for _ in range(9):
        started = time.thread_time()
        read()
        best = min(best, time.thread_time() - started)
    return best / tokens * 1e6


def main(tokens: int = TOKENS) -> dict[str, float]:
    port = _free_port()
    command = [sys.executable, "-m", "service.demo_model", "--host", HOST, "--port", str(port)]
    command += ["--tokens", str(tokens), "--token-delay-ms", "1", "--first-token-ms", "0"]
    upstream_cpu, reader_cpu = (ALL_CPUS[1], ALL_CPUS[0]) if len(ALL_CPUS) > 1 else (None, None)
    base = f"http://{HOST}:{port}/v1"
    results: dict[str, float] = {}
    with process(command, {}, upstream_cpu, f"http://{HOST}:{port}/health"):
        _pin(0, reader_cpu)
        try:
            for name, make in (("httpx", httpx.HTTPTransport), ("http11", lambda: HTTP11Transport(4))):
                transport = make()
                client = httpx.Client(transport=transport, headers={"authorization": f"Bearer {KEY}"})

                def raw(client: httpx.Client = client) -> None:
                    with client.stream("POST", f"{base}/chat/completions", json=BODY) as response:
                        for _ in response.iter_raw():
                            pass

                def generate(transport: httpx.BaseTransport = transport) -> None:
                    generator = build_generator(
                        api_key=KEY, model="demo", base_url=base, transport=transport, validate_chunks=True
                    )
                    generator.run(prompt="hi", streaming_callback=lambda chunk: None)

                results[f"{name} body"] = _per_token(raw, tokens)
                results[f"{name} OpenAIGenerator.run"] = _per_token(generate, tokens)
                client.close()  # and its transport
        finally:
            _pin(0, None)
    for name, micros in results.items():
        print(f"{name:30s} {micros:6.1f} us of the reading thread's CPU per token")
    return results


if __name__ == "__main__":
    main()
