"""One pooled set of connections to the upstream, shared by every run without mixing keys.

`OpenAIGenerator` builds a new OpenAI client per request; left alone, each builds its own httpx
client, TLS context and connection pool (about 19 ms of CPU on the event loop, and a new TCP/TLS
handshake per request). Instead each run's client gets a `RunTransport`: a thin view of the
shared pool (`service/http11.py`). Keys never mix because the key is a header of each request, not
of a connection.

The view also lets a cancelled run cut its upstream response at once: `abort()` shuts the
socket down, which wakes a worker thread blocked reading a stalled stream. A lock makes sure
this only happens while the response is still ours, never after the connection went back to
the pool for someone else.
"""

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator

import httpx

from service.http11 import HTTP11Transport


class UpstreamPool:
    def __init__(self, max_connections: int) -> None:
        self._transport = HTTP11Transport(max_connections)
        self._lock = threading.Lock()
        self._open = 0

    @property
    def open_responses(self) -> int:
        """Upstream responses handed to runs and not closed yet: each holds a pooled connection."""
        return self._open

    def _count(self, delta: int) -> None:
        with self._lock:
            self._open += delta

    def transport_for_run(self) -> "RunTransport":
        return RunTransport(self._transport, self._count)

    def close(self) -> None:
        self._transport.close()


class RunTransport(httpx.BaseTransport):
    def __init__(self, shared: httpx.BaseTransport, count: Callable[[int], None]) -> None:
        self._shared = shared
        self._count = count
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._aborted = False
        self._response: httpx.Response | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._shared.handle_request(request)
        stream = response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        with self._lock:
            self._socket = sock
            aborted = self._aborted
        assert isinstance(response.stream, httpx.SyncByteStream)
        response.stream = _ReleasingStream(response.stream, self._release)
        self._response = response
        self._count(1)
        if aborted:
            self.abort()
        return response

    def close_response(self) -> None:
        """On the worker thread, when the run stops reading: give the response's connection back now.

        httpx marks the response closed, so the SDK's own close (from its stream generator's
        finalizer, whenever that is collected) finds nothing left to do.
        """
        response, self._response = self._response, None
        if response is not None:
            response.close()

    def abort(self) -> None:
        """From any thread: end the response in flight, if there is one."""
        with self._lock:
            self._aborted = True
            if self._socket is not None:
                with contextlib.suppress(OSError):  # already closed by the peer or by the pool
                    self._socket.shutdown(socket.SHUT_RDWR)

    def _release(self) -> None:
        with self._lock:
            self._socket = None
        self._count(-1)

    def close(self) -> None:
        """The run's client is done with the pool; the pool itself stays open."""


class _ReleasingStream(httpx.SyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream, on_close: Callable[[], None]) -> None:
        self._inner = inner
        self._on_close = on_close
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._inner)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._on_close()  # forget the socket before the connection returns to the pool
        self._inner.close()
