"""A live client reading a stream event by event, that can walk away at any point."""

from typing import Any

import httpx

from tests.support.sse import SSEEvent, SSEParser


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
