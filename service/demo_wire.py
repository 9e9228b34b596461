"""The bytes on the wire for the built-in demo model server (``service.demo_model``).

The demo server has to push tens of thousands of tokens a second on one core without
being a benchmark's bottleneck, so it runs on raw asyncio streams rather than a
framework, and this module holds its wire formats:

- a minimal HTTP/1.1 connection: one request at a time from a keep-alive connection
  (request line, headers up to CRLFCRLF, a Content-Length body), a watcher that notices
  the client closing or resetting while a response is produced (buffering anything it
  sends meanwhile), fixed-length and chunked responses, and RST on demand;
- OpenAI's chat-completions formats: SSE chunk events pre-formatted as strings with only
  the token text JSON-encoded, error and completion JSON, and a batching writer.

Deliberate limits: chunked *request* bodies are refused with 411 (OpenAI clients always
send Content-Length), the header block is capped at 64 KiB and a body at 16 MiB. Chunks
are built as ``str`` that must be ASCII (every text is JSON-encoded with ensure_ascii),
so a whole batch of chunks is encoded to bytes at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from json.encoder import encode_basestring_ascii as json_str  # json.dumps of one str, minus overhead
from typing import Any

MAX_HEAD = 64 * 1024
MAX_BODY = 16 * 1024 * 1024
CHUNKED_END = "0\r\n\r\n"
JSON = "application/json"
SSE_HEADERS = (
    ("Content-Type", "text/event-stream"),
    ("Cache-Control", "no-cache"),
    ("Transfer-Encoding", "chunked"),
)
_BATCH = 64
_CLOSE_TIMEOUT = 1.0
_READ_SIZE = 64 * 1024

Headers = tuple[tuple[str, str], ...]


class HttpError(Exception):
    """A request the server refuses with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool


def chunk(data: str) -> str:
    """One HTTP chunk around ASCII ``data``."""
    return f"{len(data):x}\r\n{data}\r\n"


def response_head(status: int, headers: Headers, keep_alive: bool) -> bytes:
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}"]
    lines += [f"{name}: {value}" for name, value in headers]
    lines.append(f"Connection: {'keep-alive' if keep_alive else 'close'}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def fixed_response(status: int, content_type: str, body: bytes, keep_alive: bool, extra: Headers = ()) -> bytes:
    headers = (("Content-Type", content_type), ("Content-Length", str(len(body))), *extra)
    return response_head(status, headers, keep_alive) + body


def _parse_head(head: str) -> tuple[str, str, str, dict[str, str]]:
    lines = head.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise HttpError(400, "malformed request line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise HttpError(400, "malformed header line")
        headers[name.strip().lower()] = value.strip()
    return parts[0], parts[1].partition("?")[0], parts[2], headers


def _keep_alive(version: str, headers: dict[str, str]) -> bool:
    connection = headers.get("connection", "").lower()
    if version == "HTTP/1.0":
        return "keep-alive" in connection
    return "close" not in connection


def _body_length(headers: dict[str, str]) -> int:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise HttpError(411, "chunked request bodies are not supported; send Content-Length")
    text = headers.get("content-length", "0")
    if not (text.isascii() and text.isdigit()):
        raise HttpError(400, "invalid Content-Length")
    if int(text) > MAX_BODY:
        raise HttpError(413, "request body too large")
    return int(text)


class Connection:
    """One client connection: buffered request reading plus the response writer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._buf = bytearray()

    async def _fill(self) -> bool:
        data = await self.reader.read(_READ_SIZE)
        self._buf += data
        return bool(data)

    async def read_request(self) -> Request | None:
        """The next request, or None if the client closed the connection between requests."""
        while (end := self._buf.find(b"\r\n\r\n")) < 0:
            if len(self._buf) > MAX_HEAD:
                raise HttpError(431, "request header block too large")
            if not await self._fill():
                return None
        method, path, version, headers = _parse_head(self._buf[:end].decode("latin-1"))
        del self._buf[: end + 4]
        length = _body_length(headers)
        while len(self._buf) < length:
            if not await self._fill():
                raise ConnectionResetError("client closed the connection mid-request")
        body = bytes(self._buf[:length])
        del self._buf[:length]
        return Request(method, path, headers, body, _keep_alive(version, headers))

    async def wait_client_gone(self) -> None:
        """Return once the client closes or resets the connection.

        Runs concurrently with a response; anything the client sends meanwhile (a
        pipelined request) is kept for ``read_request``.
        """
        with contextlib.suppress(ConnectionError):
            while await self._fill():
                pass

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    async def drain(self) -> None:
        await self.writer.drain()

    async def flush_all(self) -> None:
        """Wait (bounded) until asyncio has handed every buffered byte to the kernel."""
        self.writer.transport.set_write_buffer_limits(high=0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.writer.drain(), _CLOSE_TIMEOUT)

    def reset(self) -> None:
        """Abort the TCP connection with an RST (SO_LINGER 0, then close)."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                linger = struct.pack("ii", 1, 0)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        self.writer.transport.abort()

    def abort(self) -> None:
        self.writer.transport.abort()

    async def close(self) -> None:
        """Close gracefully, aborting if buffered bytes cannot be flushed within a second."""
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), _CLOSE_TIMEOUT)
        except (OSError, TimeoutError):
            self.writer.transport.abort()


def error_json(message: str, type_: str, code: str | None) -> bytes:
    error = {"message": message, "type": type_, "param": None, "code": code}
    return json.dumps({"error": error}).encode()


def error_response(exc: HttpError, keep_alive: bool, code: str | None = None) -> bytes:
    body = error_json(exc.message, "invalid_request_error", code)
    return fixed_response(exc.status, JSON, body, keep_alive)


def usage_json(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def completion_json(completion_id: str, created: int, model: str, text: str, usage: dict[str, int]) -> bytes:
    message = {"role": "assistant", "content": text, "refusal": None}
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
    body: dict[str, Any] = {"id": completion_id, "object": "chat.completion", "created": created}
    body.update(model=model, choices=[choice], usage=usage)
    return json.dumps(body).encode()


class ChunkFormat:
    """Pre-formatted SSE events of one streamed completion, each its own HTTP chunk."""

    def __init__(self, completion_id: str, created: int, model: str) -> None:
        base = (
            f'data: {{"id":"{completion_id}","object":"chat.completion.chunk",'
            f'"created":{created},"model":{json_str(model)},"choices":'
        )
        self._base = base
        self._heads = (
            base + '[{"index":0,"delta":{"content":',
            base + '[{"index":0,"delta":{"role":"assistant","content":',
        )
        self._tail = '},"finish_reason":null}]}\n\n'
        self._fixed = (len(self._heads[0]) + len(self._tail), len(self._heads[1]) + len(self._tail))

    def content(self, text: str, first: bool) -> str:
        quoted = json_str(text)
        return f"{self._fixed[first] + len(quoted):x}\r\n{self._heads[first]}{quoted}{self._tail}\r\n"

    def empty(self) -> str:
        return chunk(self._base + '[{"index":0,"delta":{},"finish_reason":null}]}\n\n')

    def finish(self) -> str:
        return chunk(self._base + '[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n')

    def usage(self, prompt: int, completion: int) -> str:
        return chunk(f'{self._base}[],"usage":{json.dumps(usage_json(prompt, completion))}}}\n\n')


class Output:
    """Batches one response's chunks; counts content chunks once they are written.

    With ``delay`` 0 a batch is written and drained every 64 tokens; otherwise each
    token is flushed before the pause that follows it. ``on_written`` hears the running
    count after each flush, so a stream's progress can be watched while it runs.
    """

    def __init__(
        self, conn: Connection, fmt: ChunkFormat, delay: float, on_written: Callable[[int], None] | None = None
    ) -> None:
        self.conn = conn
        self.on_written = on_written
        self.fmt = fmt
        self.delay = delay
        self.parts: list[str] = []
        self.pending = 0
        self.written = 0
        self.first = True

    def add(self, data: str) -> None:
        self.parts.append(data)

    async def flush(self) -> None:
        if self.parts:
            self.conn.write("".join(self.parts).encode("ascii"))
            self.parts.clear()
        self.written += self.pending
        self.pending = 0
        if self.on_written is not None:
            self.on_written(self.written)
        await self.conn.drain()

    async def tokens(self, texts: list[str]) -> None:
        for text in texts:
            if self.delay > 0 and not self.first:
                await self.flush()
                await asyncio.sleep(self.delay)
            self.parts.append(self.fmt.content(text, self.first))
            self.first = False
            self.pending += 1
            if self.pending >= _BATCH:
                await self.flush()
                await asyncio.sleep(0)  # let the client watcher and other connections run
        await self.flush()
