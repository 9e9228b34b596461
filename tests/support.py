"""Test helpers: a real uvicorn server on an unused port, and an SSE parser that keeps what it saw."""

import json
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
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
