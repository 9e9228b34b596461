"""HTTP/1.1 for the demo model server: parsing a request head, framing a response.

The demo server has to push tens of thousands of tokens a second on one core without
being a benchmark's bottleneck, so it runs on raw asyncio streams rather than a
framework; this module holds the HTTP/1.1 it speaks (request line, headers up to
CRLFCRLF, a Content-Length body; fixed-length and chunked responses). The connection
that reads and writes these lives in ``service.demo_model.connection``.

Deliberate limits: chunked *request* bodies are refused with 411 (OpenAI clients always
send Content-Length), the header block is capped at 64 KiB and a body at 16 MiB.
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus

MAX_HEAD = 64 * 1024
MAX_BODY = 16 * 1024 * 1024
CHUNKED_END = "0\r\n\r\n"
JSON = "application/json"
SSE_HEADERS = (
    ("Content-Type", "text/event-stream"),
    ("Cache-Control", "no-cache"),
    ("Transfer-Encoding", "chunked"),
)

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


def parse_head(head: str) -> tuple[str, str, str, dict[str, str]]:
    """Method, path (query dropped), HTTP version and lower-cased headers of a request head."""
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


def wants_keep_alive(version: str, headers: dict[str, str]) -> bool:
    connection = headers.get("connection", "").lower()
    if version == "HTTP/1.0":
        return "keep-alive" in connection
    return "close" not in connection


def body_length(headers: dict[str, str]) -> int:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise HttpError(411, "chunked request bodies are not supported; send Content-Length")
    text = headers.get("content-length", "0")
    if not (text.isascii() and text.isdigit()):
        raise HttpError(400, "invalid Content-Length")
    if int(text) > MAX_BODY:
        raise HttpError(413, "request body too large")
    return int(text)
