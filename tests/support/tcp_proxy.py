"""A loopback TCP proxy a test can cut: every connection through it is severed at once, mid-stream.

It stands for a network that drops: the browser sees its connection reset, the service sees its
client leave, and new connections go through as before. It runs its own event loop in a thread.
"""

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class SeverableProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.connections = 0  # accepted so far
        self._loop = asyncio.new_event_loop()
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def sever(self) -> int:
        """Cut every open connection (a reset towards the client); returns how many were cut."""
        return asyncio.run_coroutine_threadsafe(self._sever(), self._loop).result(5)

    async def _sever(self) -> int:
        links, self._links = self._links, set()
        for client, upstream in links:
            client.transport.abort()
            upstream.transport.abort()
        return len(links)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._sever()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _accept(self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        try:
            upstream_reader, upstream = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client.transport.abort()
            return
        link = (client, upstream)
        self._links.add(link)
        await asyncio.gather(_pipe(client_reader, upstream), _pipe(upstream_reader, client))
        self._links.discard(link)

    @contextmanager
    def running(self) -> Iterator["SeverableProxy"]:
        thread = threading.Thread(target=self._loop.run_forever, name="severable-proxy", daemon=True)
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(5)
            yield self
        finally:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            thread.join(5)
            self._loop.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


@contextmanager
def severable_proxy(target_url: str) -> Iterator[SeverableProxy]:
    with SeverableProxy(int(target_url.rsplit(":", 1)[1])).running() as proxy:
        yield proxy
