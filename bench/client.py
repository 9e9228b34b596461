"""An SSE load client cheap enough not to be what it measures.

Raw asyncio streams and a minimal HTTP/1.1 chunked reader: httpx costs tens of microseconds per
event, which at 10,000 tokens/s would be the client's own ceiling. It speaks to both ends of the
comparison: the service (`event: data` + JSON string) and the upstream alone (OpenAI chunks; also
what the service's /v1/chat/completions sends).
Times are `time.perf_counter()` seconds from just before the request is written.
"""

import asyncio
import itertools
import json
import time
from dataclasses import dataclass, field


@dataclass
class StreamResult:
    status: int = 0
    ttfb: float | None = None  # first response byte (the status line)
    ttft: float | None = None  # first text
    token_times: list[float] = field(default_factory=list)  # arrival time of each text-carrying event
    total: float | None = None  # the stream's end
    text: str = ""
    ended: bool = False  # `end` event (service) or `[DONE]` (upstream)
    error: str | None = None
    closed_at: float | None = None  # time.monotonic() when this client walked away, if it did

    def gaps(self) -> list[float]:
        times = self.token_times
        return [b - a for a, b in itertools.pairwise(times)]


def chat_request(host: str, port: int, path: str, body: dict[str, object], key: str) -> bytes:
    payload = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {key}\r\nAccept: text/event-stream\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


async def stream(
    host: str, port: int, request: bytes, *, upstream_format: bool, leave_after: int | None = None
) -> StreamResult:
    """One request; reads the whole stream, or walks away after `leave_after` text events."""
    result = StreamResult()
    start = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError as error:
        result.error = f"connect: {error}"
        return result
    try:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        result.ttfb = time.perf_counter() - start
        result.status = int(head.split(b" ", 2)[1])
        if result.status != 200:
            result.error = f"status {result.status}"
            return result
        await _read_events(reader, result, start, upstream_format, leave_after)
        if leave_after is not None and len(result.token_times) >= leave_after:
            result.closed_at = time.monotonic()
    except (OSError, asyncio.IncompleteReadError, ValueError) as error:
        result.error = f"{type(error).__name__}: {error}"
    finally:
        writer.transport.abort() if result.closed_at is not None else writer.close()
    return result


async def _read_events(
    reader: asyncio.StreamReader, result: StreamResult, start: float, upstream_format: bool, leave_after: int | None
) -> None:
    pending = b""
    pieces: list[str] = []
    while True:
        size = int((await reader.readuntil(b"\r\n"))[:-2], 16)
        if size == 0:
            break
        pending += (await reader.readexactly(size + 2))[:-2]
        now = time.perf_counter() - start
        *frames, pending = pending.split(b"\n\n")
        for frame in frames:
            text, done = _parse_upstream(frame) if upstream_format else _parse_service(frame)
            if text:
                pieces.append(text)
                result.token_times.append(now)
                if result.ttft is None:
                    result.ttft = now
            if done:
                result.ended = done == "end"
                if done == "error":
                    result.error = frame.decode(errors="replace")
                result.total = now
                result.text = "".join(pieces)
                return
        if leave_after is not None and len(result.token_times) >= leave_after:
            result.text = "".join(pieces)
            return
    result.total = time.perf_counter() - start
    result.text = "".join(pieces)


def _parse_service(frame: bytes) -> tuple[str, str | None]:
    event = b""
    data = []
    for line in frame.split(b"\n"):
        if line.startswith(b"event: "):
            event = line[7:]
        elif line.startswith(b"data: "):
            data.append(line[6:])
    if event == b"data":
        return json.loads(b"\n".join(data)), None
    if event in (b"end", b"error"):
        return "", event.decode()
    return "", None


def _parse_upstream(frame: bytes) -> tuple[str, str | None]:
    if frame.startswith(b"id: "):  # the service's /v1/chat/completions: OpenAI's chunks, each with an SSE id
        frame = frame.partition(b"\n")[2]
    if not frame.startswith(b"data: "):
        return "", None
    data = frame[6:]
    if data == b"[DONE]":
        return "", "end"
    choices = json.loads(data).get("choices") or [{}]
    return choices[0].get("delta", {}).get("content") or "", None
