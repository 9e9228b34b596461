"""One pooled set of connections to the upstream, shared by every run without mixing keys.

`OpenAIGenerator` builds a new OpenAI client per request; left alone, each builds its own httpx
client, TLS context and connection pool (CPU on the event loop, and a new TCP/TLS handshake per
request; measured in docs/performance.md, "No per-request client or TLS context"). Instead each
run's client gets a `RunTransport`: a thin view of the shared pool (`service/upstream/http11.py`).
Keys never mix because the key is a header of each request, not of a connection.

The view also lets a cancelled run cut its upstream request at once: the pool hands it each
connection's socket before the request is sent, and `abort()` shuts that socket down, which wakes
a worker thread blocked on a stalled upstream, before its response headers or after. The request
it cut, and any the SDK would send after it, fail with `UpstreamCancelled`, which the SDK does not
retry (nor wait before). A lock makes sure the shutdown only happens while the connection is
still ours, never after it went back to the pool for someone else.
"""

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator

import httpx

from service.errors import UpstreamCancelled
from service.upstream.http11 import HTTP11Transport


class UpstreamPool:
    def __init__(self, max_connections: int, first_byte_timeout: float | None = None) -> None:
        self._transport = HTTP11Transport(max_connections, first_byte_timeout=first_byte_timeout)
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
    def __init__(self, shared: HTTP11Transport, count: Callable[[int], None]) -> None:
        self._shared = shared
        self._count = count
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._aborted = False
        self._response: httpx.Response | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self._aborted:
            raise UpstreamCancelled
        try:
            response = self._shared.handle_request(request, on_socket=self._attach)
        except Exception as error:
            self._release_socket()
            if self._aborted:  # failed because `abort` cut it: not something to retry
                raise UpstreamCancelled from error
            raise
        assert isinstance(response.stream, httpx.SyncByteStream)
        response.stream = _ReleasingStream(response.stream, self._release)
        self._response = response
        self._count(1)
        return response

    def _attach(self, sock: socket.socket) -> None:
        """The connection this run's request goes out on, before it is sent."""
        with self._lock:
            self._socket = sock
            if self._aborted:
                _shut(sock)

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
                _shut(self._socket)

    def _release_socket(self) -> None:
        with self._lock:
            self._socket = None

    def _release(self) -> None:
        self._release_socket()
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


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed by the peer or by the pool
        sock.shutdown(socket.SHUT_RDWR)
