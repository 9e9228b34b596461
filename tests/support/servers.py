"""Real servers for tests: uvicorn on an unused port, the service as a process, ports that refuse."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from tests.support.waiting import _wait, wait_until


def asgi_client_for(app: FastAPI) -> httpx.AsyncClient:
    """The app in-process, no sockets: for contract tests at the SDK's HTTP boundary."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service.test")


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def accepts(port: int) -> bool:
    """Something listens on this loopback port (a server started as a process, before it is used)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port that refuses connections while held: bound, never listening, so no server started
    meanwhile (the service under test, on an `unused_port`) can take it and answer instead."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@contextmanager
def run_server(app: FastAPI, **options: Any) -> Iterator[str]:
    """uvicorn in a thread, as in uvicorn's own tests; yields the base URL, stops it on exit.

    `options` go to `uvicorn.Config` (e.g. `http="h11"`).
    """
    config = uvicorn.Config(app, host="127.0.0.1", port=unused_port(), log_config=None, lifespan="on", **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        if not _wait(lambda: server.started or not thread.is_alive(), 10):
            raise TimeoutError("uvicorn did not start")
        if not server.started:
            raise RuntimeError("uvicorn failed to start")
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(15)
        assert not thread.is_alive(), "uvicorn did not stop"


def stop_process(process: "subprocess.Popen[bytes]", timeout: float) -> None:
    """SIGTERM, then wait `timeout` s; a process that does not stop is killed and the test fails."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
        raise


@dataclass
class ServiceProcess:
    """A `python -m service` process, its base URL and the file its output goes to."""

    process: "subprocess.Popen[bytes]"
    url: str
    log: Path

    def terminate(self) -> float:
        """Send SIGTERM; returns when it was sent."""
        sent = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        return sent

    def exit_code_by(self, deadline: float) -> int:
        try:
            return self.process.wait(max(deadline - time.monotonic(), 0))
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the service was still running at the deadline\n{self.log.read_text()}") from None


@contextmanager
def run_service_process(
    *args: str,
    env: Mapping[str, str],
    log_dir: Path,
    ready: str = "/healthz",
    start_timeout: float = 30,
    stop_timeout: float = 15,
    kill_on_exit: bool = False,
) -> Iterator[ServiceProcess]:
    """`python -m service ARGS --port PORT` with `env` added; yields once `ready` answers 200.

    A process that dies on start fails the test with its log. On exit it is sent SIGTERM and given
    `stop_timeout` s (see `stop_process`), or, with `kill_on_exit` (for tests that stop it
    themselves), killed if it is still running.
    """
    port = unused_port()
    log = log_dir / f"service-{port}.log"
    command = [sys.executable, "-m", "service", *args, "--port", str(port)]
    with log.open("w") as output:
        process = subprocess.Popen(command, env=os.environ | dict(env), stdout=output, stderr=subprocess.STDOUT)
    service = ServiceProcess(process, f"http://127.0.0.1:{port}", log)
    try:
        wait_until(
            lambda: process.poll() is not None or _answers(service.url + ready),
            start_timeout,
            message=f"the service to answer {ready}",
        )
        assert process.poll() is None, f"the service exited on start:\n{log.read_text()}"
        yield service
    finally:
        if kill_on_exit:
            process.kill()
            process.wait(5)
        else:
            stop_process(process, stop_timeout)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
