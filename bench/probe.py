"""A client with nothing else to do: how soon a service answers a new stream while others load it.

    python -m bench.probe PORT SECONDS [INTERVAL]

Every INTERVAL seconds (default 0.1) it connects, sends one `POST /chat` and times the status line
on a blocking socket, then hangs up (a stream it was given is cancelled at once, as a client that
leaves is). It runs in a process of its own, so its figures hold nothing of the load client's own
loop, which shares a CPU with the upstream and 200 streams. Prints one JSON list of
`[status, seconds to the status line]`.
"""

import json
import socket
import sys
import time

from bench.client import chat_request

HOST = "127.0.0.1"


def probe(port: int, seconds: float, interval: float = 0.1) -> list[tuple[int, float]]:
    request = chat_request(HOST, port, "/chat", {"query": "probe", "api_key": "sk-probe"}, "sk-probe")
    out: list[tuple[int, float]] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.perf_counter()
        with socket.create_connection((HOST, port), timeout=30) as sock:
            sock.sendall(request)
            head = sock.recv(64)
            took = time.perf_counter() - started
        status = int(head.split(b" ")[1]) if head.startswith(b"HTTP/") else 0
        out.append((status, took))
        time.sleep(interval)
    return out


if __name__ == "__main__":
    port, seconds = int(sys.argv[1]), float(sys.argv[2])
    print(json.dumps(probe(port, seconds, float(sys.argv[3]) if len(sys.argv) > 3 else 0.1)))
