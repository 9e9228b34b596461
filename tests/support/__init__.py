"""Test helpers: a real uvicorn server on an unused port, and an SSE parser that keeps what it saw."""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI


def asgi_client_for(app: FastAPI) -> httpx.AsyncClient:
    """The app in-process, no sockets: for contract tests at the SDK's HTTP boundary."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service.test")


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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


def _wait(condition: Callable[[], object], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def wait_until(condition: Callable[[], object], timeout: float = 5.0, message: str = "condition") -> None:
    """Poll with a deadline; the failure says what was awaited."""
    if not _wait(condition, timeout):
        raise AssertionError(f"timed out waiting for {message}")


async def until(condition: Callable[[], object], within: float = 5.0, message: str = "condition") -> None:
    """`wait_until` for a coroutine: polls without blocking the event loop."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        await asyncio.sleep(0.01)


@dataclass
class SSEEvent:
    event: str
    data: str
    id: str | None

    def json(self) -> Any:
        return json.loads(self.data)


@dataclass
class SSEParser:
    """A spec-following incremental parser (what a browser's EventSource does), plus comments."""

    events: list[SSEEvent] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)  # "event:NAME" and "comment:TEXT", in arrival order
    _buffer: str = ""
    _data: list[str] = field(default_factory=list)
    _event: str = ""
    _id: str | None = None

    @property
    def complete(self) -> bool:
        """Nothing half-received: no partial line, no event still waiting for its blank line."""
        return not self._buffer and not self._data

    def feed(self, text: str) -> list[SSEEvent]:
        self._buffer += text
        new: list[SSEEvent] = []
        while True:
            line, sep, rest = _split_line(self._buffer)
            if not sep:
                return new
            self._buffer = rest
            event = self._line(line)
            if event is not None:
                self.events.append(event)
                self.log.append(f"event:{event.event}")
                new.append(event)

    def _line(self, line: str) -> SSEEvent | None:
        if line == "":
            if not self._data:
                self._event = ""
                return None
            event = SSEEvent(self._event or "message", "\n".join(self._data), self._id)
            self._data, self._event = [], ""
            return event
        if line.startswith(":"):
            self.comments.append(line[1:].strip())
            self.log.append(f"comment:{line[1:].strip()}")
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            self._id = value
        return None


def _split_line(buffer: str) -> tuple[str, str, str]:
    for index, char in enumerate(buffer):
        if char == "\n":
            return buffer[:index], "\n", buffer[index + 1 :]
        if char == "\r":
            if index + 1 == len(buffer):
                return "", "", buffer  # wait: it may be the first half of CRLF
            end = index + 2 if buffer[index + 1] == "\n" else index + 1
            return buffer[:index], buffer[index:end], buffer[end:]
    return "", "", buffer


def parse_sse(text: str) -> SSEParser:
    parser = SSEParser()
    parser.feed(text)
    return parser


def text_of(events: Iterable[SSEEvent]) -> str:
    """The answer's text: the `data` events' payloads, joined."""
    return "".join(event.json() for event in events if event.event == "data")


class LiveStream:
    """A client reading `POST /chat` (or another stream) event by event, that can walk away at any point."""

    def __init__(
        self,
        client: httpx.Client,
        body: dict[str, Any] | None,
        headers: dict[str, str] | None = None,
        *,
        method: str = "POST",
        url: str = "/chat",
    ) -> None:
        self._context = client.stream(method, url, json=body, headers=headers)
        self.response = self._context.__enter__()
        self.parser = SSEParser()
        self._chunks = self.response.iter_text()
        self._taken = 0

    def next_event(self) -> SSEEvent | None:
        """The next event, or None when the stream ended."""
        while True:
            if len(self.parser.events) > self._taken:
                self._taken += 1
                return self.parser.events[self._taken - 1]
            text = next(self._chunks, None)
            if text is None:
                return None
            self.parser.feed(text)

    def rest(self) -> list[SSEEvent]:
        events = []
        while (event := self.next_event()) is not None:
            events.append(event)
        return events

    def close(self) -> None:
        self._context.__exit__(None, None, None)

    def __enter__(self) -> "LiveStream":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


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
