"""One client connection of the demo model server, over raw asyncio streams.

It reads one request at a time from a keep-alive connection, and has a watcher that
notices the client closing or resetting while a response is produced (buffering anything
the client sends meanwhile), plus graceful close, abort and RST on demand.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

from service.demo_model.wire import MAX_HEAD, HttpError, Request, body_length, parse_head, wants_keep_alive

_CLOSE_TIMEOUT = 1.0
_READ_SIZE = 64 * 1024


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
        method, path, version, headers = parse_head(self._buf[:end].decode("latin-1"))
        del self._buf[: end + 4]
        length = body_length(headers)
        while len(self._buf) < length:
            if not await self._fill():
                raise ConnectionResetError("client closed the connection mid-request")
        body = bytes(self._buf[:length])
        del self._buf[:length]
        return Request(method, path, headers, body, wants_keep_alive(version, headers))

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
