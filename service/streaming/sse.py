"""Server-Sent Events framing: events in, bytes out.

Kept to pre-encoded bytes on purpose: `fastapi.sse` wraps every event in two tasks, two memory
streams and a timeout scope, which was measured at about a quarter of a relay's CPU per token.
Framing follows the WHATWG spec (and sse-starlette's tests): multi-line data becomes several
`data:` lines, and `event`/`id` lose any CR, LF or NUL so a value cannot end a field early.
Lines are split on CR, LF and CRLF only, never on the other separators `str.splitlines` knows.
"""

import re
from typing import NamedTuple

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_FIELD_UNSAFE = re.compile(r"[\r\n\0]")


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


def comment(text: str) -> bytes:
    """A comment frame; clients ignore it, proxies see traffic."""
    return "".join(f": {line}\n" for line in _LINE_BREAK.split(text)).encode() + b"\n"


KEEPALIVE_FRAME = comment("keep-alive")
