"""Looking inside a live service after a fault: its runs, its loop's tasks, its sockets and threads.

`RunSpy` records every run the registry admits (their producer tasks lead to the service's event
loop); `Baseline` snapshots what an idle service holds, so a test can wait for it to come back.
"""

import asyncio
import gc
import json
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.demo_model import DemoModelServer
from service.streaming.run import Admission, Run
from tests.conftest import LiveService
from tests.support.waiting import wait_until


class RunSpy:
    """Wraps `registry.admit` to keep every admitted run (and so the service's loop)."""

    def __init__(self, registry: Admission) -> None:
        self.runs: list[Run] = []
        admit = registry.admit

        def spying_admit() -> Run:
            run = admit()
            self.runs.append(run)
            return run

        registry.admit = spying_admit  # type: ignore[method-assign]

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        task = self.runs[0].task
        assert task is not None
        return task.get_loop()


def loop_tasks(loop: asyncio.AbstractEventLoop) -> set["asyncio.Task[Any]"]:
    """Every task on `loop` (asked on the loop itself), minus the asking one."""

    async def others() -> set[asyncio.Task[Any]]:
        return asyncio.all_tasks() - {asyncio.current_task()}

    return asyncio.run_coroutine_threadsafe(others(), loop).result(5)


def open_fds() -> int | None:
    """Open file descriptors of this process (service, upstream and clients), where /proc tells.

    After a garbage collection: a cancelled upstream connection's socket, already shut down (its
    TCP connection gone), can wait in a reference cycle until the collector runs.
    """
    fd_dir = Path("/proc/self/fd")
    if not fd_dir.is_dir():
        return None
    gc.collect()
    return len(os.listdir(fd_dir))


def tcp_connections(port: int, *, remote: bool = False) -> int | None:
    """TCP connections whose local (or `remote`) port is `port`, minus listeners and TIME_WAIT (no fd)."""
    tables = [Path("/proc/self/net/tcp"), Path("/proc/self/net/tcp6")]
    if not tables[0].exists():
        return None
    count = 0
    for table in tables:
        for line in table.read_text().splitlines()[1:] if table.exists() else []:
            fields = line.split()
            end = fields[2] if remote else fields[1]
            if int(end.rsplit(":", 1)[1], 16) == port and fields[3] not in ("0A", "06"):  # LISTEN, TIME_WAIT
                count += 1
    return count


def threads_outside_the_pool() -> int:
    """Live threads other than the stream pool's (which stay, idle, once started)."""
    return sum(1 for thread in threading.enumerate() if not thread.name.startswith("pipeline"))


@dataclass(frozen=True)
class Baseline:
    """What an idle service holds, to wait for after a burst: threads, sockets, connections."""

    threads: int
    fds: int | None
    client_connections: int | None  # accepted by the service
    upstream_connections: int | None  # from the service to the upstream
    upstream_open: int  # as the upstream counts them

    @classmethod
    def take(cls, service: LiveService, upstream: DemoModelServer) -> "Baseline":
        return cls(
            threads_outside_the_pool(),
            open_fds(),
            tcp_connections(port_of(service.url)),
            tcp_connections(upstream.port, remote=True),
            upstream.open_connections,
        )

    def wait_back(self, service: LiveService, upstream: DemoModelServer, timeout: float = 15.0) -> None:
        now = Baseline.take(service, upstream)
        checks: list[tuple[str, Callable[[], bool]]] = [
            ("pool.busy == 0", lambda: service.state.threads.busy == 0),
            ("registry.active == 0", lambda: service.state.admission.active == 0),
            ("the upstream's open connections", lambda: upstream.open_connections <= self.upstream_open),
            ("threads outside the pool", lambda: threads_outside_the_pool() <= self.threads),
            (
                "connections to the service",
                lambda: _at_most(tcp_connections(port_of(service.url)), self.client_connections),
            ),
            (
                "connections to the upstream",
                lambda: _at_most(tcp_connections(upstream.port, remote=True), self.upstream_connections),
            ),
            ("open file descriptors", lambda: _at_most(open_fds(), self.fds)),
        ]
        for name, check in checks:
            wait_until(
                check,
                timeout,
                message=f"{name} to return to the baseline {self} (just after the burst: {now})",
            )


def _at_most(value: int | None, limit: int | None) -> bool:
    return value is None or limit is None or value <= limit


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def raw_chat(url: str, body: dict[str, Any], rcvbuf: int | None = None) -> socket.socket:
    """A client that sends `POST /chat` over a bare socket and leaves reading to the caller.

    `rcvbuf` shrinks the receive buffer (set before connecting, so the window is small from the
    start): a client that then never reads fills the path quickly.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port_of(url)))
    payload = json.dumps(body).encode()
    head = f"POST /chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    sock.sendall(head.encode() + payload)
    return sock


def read_until(sock: socket.socket, marker: bytes, limit: int = 1 << 20) -> bytes:
    data = b""
    while marker not in data:
        part = sock.recv(65536)
        if not part or len(data) > limit:
            raise AssertionError(f"{marker!r} never came; got {data[:200]!r}")
        data += part
    return data


class Settled:
    """A live service watched from idle: `check()` proves a run left nothing behind.

    Built after a first request has come and gone (so the spy knows the loop), it snapshots the
    loop's tasks; `check()` then waits for the pool, the registry and the loop to be back there.
    """

    def __init__(self, service: LiveService, warm_up: Callable[[], object]) -> None:
        self.service = service
        self.spy = RunSpy(service.state.admission)
        warm_up()
        self.idle()

    def idle(self) -> None:
        self.wait_idle()
        self.tasks = loop_tasks(self.spy.loop)

    def wait_idle(self, timeout: float = 10.0) -> None:
        state = self.service.state
        wait_until(lambda: state.threads.busy == 0, timeout, "the pool's busy count to return to zero")
        wait_until(lambda: state.admission.active == 0, timeout, "every run to be released")

    def check(self, timeout: float = 10.0) -> None:
        self.wait_idle(timeout)
        wait_until(lambda: not self.leftover_tasks(), timeout, "the run's tasks to finish")
        for run in self.spy.runs:
            assert run.task is not None and run.task.done()

    def leftover_tasks(self) -> set["asyncio.Task[Any]"]:
        return loop_tasks(self.spy.loop) - self.tasks
