"""Server-Sent Events framing: events in, bytes out.

Kept to pre-encoded bytes on purpose: `fastapi.sse` wraps every event in two tasks, two memory
streams and a timeout scope, which was measured at about a quarter of a relay's CPU per token.
Framing follows the WHATWG spec (and sse-starlette's tests): multi-line data becomes several
`data:` lines, and `event`/`id` lose any CR, LF or NUL so a value cannot end a field early.
Lines are split on CR, LF and CRLF only, never on the other separators `str.splitlines` knows.

Those others must still never reach the wire raw: line readers that split like `str.splitlines`
(httpx's and requests' `iter_lines`) would cut a `data:` line in two. Event data is JSON, which
escapes the control characters among them; `json_string` escapes the rest (U+2028, U+2029, U+0085),
and every other event is `json.dumps`'d ASCII. The text a client decodes is the same either way.

A run's wire format is chosen when it starts: an `Encoder` turns each of its events (with the id
the event log gives it) into the frame its readers get. `EVENTS`, the default, is the service's own
named events (POST /chat, the runs API); `service/streaming/openai_chunks.py` is OpenAI's chunks.
"""

import re
from json.encoder import encode_basestring
from typing import ClassVar, NamedTuple, Protocol

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_FIELD_UNSAFE = re.compile(r"[\r\n\0]")
_SEPARATOR_ESCAPES = str.maketrans({"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"})


class Event(NamedTuple):
    name: str
    data: str
    id: int | str | None = None


def encode(event: Event) -> bytes:
    """One event as wire bytes, ending with the blank line that dispatches it."""
    parts = []
    if event.id is not None:
        parts.append(f"id: {_FIELD_UNSAFE.sub('', str(event.id))}\n")
    if event.name:
        parts.append(f"event: {_FIELD_UNSAFE.sub('', event.name)}\n")
    for line in _LINE_BREAK.split(event.data):
        parts.append(f"data: {line}\n")
    parts.append("\n")
    return "".join(parts).encode()


def json_string(text: str) -> str:
    """`text` as a JSON string, other non-ASCII as is: `json.dumps(text, ensure_ascii=False)` minus the
    encoder that builds per call, plus the separators escaped. About 65 ns for a short token against
    json.dumps' 600 (`python -m timeit`); the separator check is 40 of those 65."""
    encoded = encode_basestring(text)
    if "\u2028" in encoded or "\u2029" in encoded or "\x85" in encoded:
        return encoded.translate(_SEPARATOR_ESCAPES)
    return encoded


def json_frame(data: str, event_id: str | None, name: str | None = None) -> bytes:
    """One event in one step, for what needs nothing split or stripped: `data` is JSON (no line
    break: `json_string`, `json.dumps`), `event_id` one of the event log's (`<run_id>:<n>`, URL-safe)
    and `name` a constant of ours. Each token's frame is one of these."""
    head = "" if event_id is None else f"id: {event_id}\n"
    if name is not None:
        head += f"event: {name}\n"
    return f"{head}data: {data}\n\n".encode()


def comment(text: str) -> bytes:
    """A comment frame; clients ignore it, proxies see traffic."""
    return "".join(f": {line}\n" for line in _LINE_BREAK.split(text)).encode() + b"\n"


KEEPALIVE_FRAME = comment("keep-alive")


class Encoder(Protocol):
    """How a run's events go on the wire. `wire` names the format, so a reader asking for another one
    (a Last-Event-ID or an Idempotency-Key sent to another endpoint) can be refused."""

    wire: ClassVar[str]

    def __call__(self, event: Event, event_id: str | None) -> bytes: ...


class NamedEvents:
    """The service's own events: `metadata`, `data`..., then `end` or `error`, each with its id.

    A `data` event, one per token, is a `json_frame`: its data is a JSON string (`json_string`);
    anything else, or data with a raw line break, takes `encode`'s general path."""

    wire: ClassVar[str] = "events"

    def __call__(self, event: Event, event_id: str | None) -> bytes:
        data = event.data
        if event.name == "data" and "\n" not in data and "\r" not in data:
            return json_frame(data, event_id, "data")
        return encode(Event(event.name, data, event_id))


EVENTS = NamedEvents()
