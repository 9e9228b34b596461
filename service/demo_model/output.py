"""The batching writer of one streamed answer: content chunks out, a running count back."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from service.demo_model.connection import Connection
from service.demo_model.formats import ChunkFormat

_BATCH = 64


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
