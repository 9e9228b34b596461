"""An SSE parser that keeps what it saw, for asserting on streams."""

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


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
