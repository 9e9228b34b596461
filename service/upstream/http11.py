"""The connection pool to the upstream: httpx's transport interface over the standard library's HTTP/1.1.

The OpenAI SDK reads its stream through httpx. A streamed answer is one read of the upstream's socket
per token when tokens come slower than the service handles them, so a read's cost is paid once per
token, on the worker thread, under the GIL. httpx's own transport (httpcore parsing with h11) costs
more of the thread's CPU per read than `http.client`, which reads the same chunked body with
C-buffered line and block reads (`python -m bench.transport`; the figures are in docs/performance.md,
"The upstream pool over `http.client`").

What it keeps from httpx's transport: one pool for every run, at most `max_connections` connections
(a request waits for one up to its pool timeout), idle connections reused per origin once checked
for a close from the peer, httpx's timeouts (connect, write, read, pool) and exceptions (plus a
timeout of its own for the response's head, see `HTTP11Transport`), TLS with
httpx's default context, the socket for a caller that may need to cut a request short
(`on_socket`), no retry of its own (the OpenAI SDK's retries apply, as before), and the proxies
the environment names (`service/upstream/proxies.py`): https through a CONNECT tunnel (`set_tunnel`), plain
http as absolute-form requests to the proxy. What it does not do: HTTP/2, https or SOCKS proxies,
and request bodies other than bytes in memory.
"""

import http.client
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator

import httpx

from service.upstream.proxies import Proxy, ProxyRoutes

Origin = tuple[str, str, int]
_LEAST_WAIT = 0.001  # a deadline already passed still times out, rather than making the socket non-blocking


class HTTP11Transport(httpx.BaseTransport):
    def __init__(
        self,
        max_connections: int,
        ssl_context: ssl.SSLContext | None = None,
        first_byte_timeout: float | None = None,
        proxies: ProxyRoutes | None = None,
    ) -> None:
        """`ssl_context`: for https upstreams; by default httpx's (certifi's roots, or SSL_CERT_FILE's).

        `proxies`: by default read from the environment, now (`ProxyRoutes.from_environment`).

        `first_byte_timeout`: seconds from taking a connection to the response's head (status line and
        headers), connecting included, instead of the request's read timeout; the body's reads then get
        the read timeout, each. The socket's timeout is set once for the head and once after it, so a
        read of the body costs what it did.
        """
        self._first_byte = first_byte_timeout
        self._proxies = ProxyRoutes.from_environment() if proxies is None else proxies
        self._slots = threading.BoundedSemaphore(max_connections)
        self._lock = threading.Lock()
        self._idle: dict[Origin, list[http.client.HTTPConnection]] = {}
        self._ssl = ssl_context
        self._closed = False

    def handle_request(
        self, request: httpx.Request, on_socket: Callable[[socket.socket], None] | None = None
    ) -> httpx.Response:
        """`on_socket` gets the connection's socket before the request goes out on it (to cut it short)."""
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        if not self._slots.acquire(timeout=timeouts.get("pool")):
            raise httpx.PoolTimeout("no upstream connection became free in time", request=request)
        try:
            return self._send(request, timeouts, on_socket)
        except BaseException:
            self._slots.release()
            raise

    def _send(
        self,
        request: httpx.Request,
        timeouts: dict[str, float | None],
        on_socket: Callable[[socket.socket], None] | None,
    ) -> httpx.Response:
        url = request.url
        origin = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        deadline = None if self._first_byte is None else time.monotonic() + self._first_byte
        connection = self._connection(origin, request, _within(timeouts.get("connect"), deadline))
        writing = True
        try:
            if on_socket is not None:
                on_socket(connection.sock)
            _write(connection, request, timeouts.get("write"))
            writing = False
            response = _read_head(connection, timeouts.get("read"), deadline)
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            raise _mapped(error, request, writing=writing) from error
        except BaseException:
            connection.close()
            raise
        headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in response.getheaders()]
        extensions = {
            "http_version": b"HTTP/1.1" if response.version == 11 else b"HTTP/1.0",
            "reason_phrase": response.reason.encode("latin-1", "replace"),
        }
        stream = _ResponseBody(self, origin, connection, response, request)
        return httpx.Response(response.status, headers=headers, stream=stream, extensions=extensions)

    def _connection(self, origin: Origin, request: httpx.Request, timeout: float | None) -> http.client.HTTPConnection:
        with self._lock:
            idle = self._idle.get(origin, [])
            while idle:
                kept = idle.pop()
                if _usable(kept):
                    return kept
                kept.close()
        connection = self._open(origin, self._proxies.for_url(request.url), timeout)
        try:
            connection.connect()
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            if isinstance(error, TimeoutError):
                raise httpx.ConnectTimeout(str(error) or "connect timed out", request=request) from error
            raise httpx.ConnectError(str(error), request=request) from error
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection

    def _open(self, origin: Origin, proxy: Proxy | None, timeout: float | None) -> http.client.HTTPConnection:
        """A new connection to `origin`, through `proxy` when there is one; not connected yet."""
        scheme, host, port = origin
        if scheme == "https":
            address = (host, port) if proxy is None else (proxy.host, proxy.port)
            tls = http.client.HTTPSConnection(*address, timeout=timeout, context=self._ssl_context())
            if proxy is not None:
                tls.set_tunnel(host, port, headers=proxy.headers)  # CONNECT, then TLS with the upstream inside
            return tls
        if proxy is not None:
            return _ViaProxy(proxy, timeout)
        return http.client.HTTPConnection(host, port, timeout=timeout)

    def _ssl_context(self) -> ssl.SSLContext:
        with self._lock:
            if self._ssl is None:
                self._ssl = httpx.create_ssl_context()  # made on first use: loading the roots takes ~20 ms
            return self._ssl

    def _give_back(self, origin: Origin, connection: http.client.HTTPConnection | None) -> None:
        """A response is done with its connection: keep it for the next request (when given) and free the slot."""
        if connection is not None:
            with self._lock:
                if not self._closed:
                    self._idle.setdefault(origin, []).append(connection)
                    connection = None
            if connection is not None:
                connection.close()
        self._slots.release()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()


class _ResponseBody(httpx.SyncByteStream):
    def __init__(
        self,
        pool: HTTP11Transport,
        origin: Origin,
        connection: http.client.HTTPConnection,
        response: http.client.HTTPResponse,
        request: httpx.Request,
    ) -> None:
        self._pool = pool
        self._origin = origin
        self._connection: http.client.HTTPConnection | None = connection
        self._response = response
        self._request = request
        self._complete = False  # the whole body was read: the connection is at a clean boundary

    def __iter__(self) -> Iterator[bytes]:
        try:
            while data := self._response.read1(65536):  # for a chunked body: one chunk, or what is left of it
                yield data
        except (OSError, http.client.HTTPException, ValueError) as error:
            raise _mapped(error, self._request, writing=False) from error
        if self._response.length:  # http.client ends a body cut short of its Content-Length quietly
            raise httpx.RemoteProtocolError("the upstream closed before the whole body arrived", request=self._request)
        self._complete = True

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        # Reusable only when the whole body was read and neither side asked to close.
        reusable = self._complete and not self._response.will_close
        self._response.close()
        if not reusable:
            connection.close()
        self._pool._give_back(self._origin, connection if reusable else None)


class _ViaProxy(http.client.HTTPConnection):
    """Plain http through a proxy: connected to the proxy, each request naming its whole URL (absolute-form)."""

    def __init__(self, proxy: Proxy, timeout: float | None) -> None:
        super().__init__(proxy.host, proxy.port, timeout=timeout)
        self.proxy_headers = proxy.headers


def _write(connection: http.client.HTTPConnection, request: httpx.Request, timeout: float | None) -> None:
    connection.sock.settimeout(timeout)
    target = request.url.raw_path.decode("ascii")
    proxy_headers = connection.proxy_headers if isinstance(connection, _ViaProxy) else {}
    if isinstance(connection, _ViaProxy):
        target = f"http://{request.url.netloc.decode('ascii')}{target}"
    connection.putrequest(request.method, target, skip_host=True, skip_accept_encoding=True)
    for name, value in request.headers.raw:
        connection.putheader(name, value)
    for header, text in proxy_headers.items():
        connection.putheader(header, text)
    connection.endheaders(request.read() or None)


def _read_head(
    connection: http.client.HTTPConnection, read_timeout: float | None, deadline: float | None
) -> http.client.HTTPResponse:
    """The response's status line and headers: within `deadline` when there is one, else the read timeout."""
    if deadline is None:
        connection.sock.settimeout(read_timeout)
        return connection.getresponse()
    connection.sock.settimeout(max(deadline - time.monotonic(), _LEAST_WAIT))
    response = connection.getresponse()
    connection.sock.settimeout(read_timeout)  # the body's reads: each within the read timeout
    return response


def _within(timeout: float | None, deadline: float | None) -> float | None:
    """`timeout`, cut short to what is left before `deadline`."""
    if deadline is None:
        return timeout
    left = max(deadline - time.monotonic(), _LEAST_WAIT)
    return left if timeout is None else min(timeout, left)


def _usable(connection: http.client.HTTPConnection) -> bool:
    """An idle connection the peer has not closed: nothing to read on it (a closed one reads as EOF)."""
    sock = connection.sock
    if sock is None:
        return False
    poller = select.poll()  # not select(): it fails on descriptors above 1023, and a busy service has them
    poller.register(sock, select.POLLIN)
    return not poller.poll(0)


def _mapped(error: Exception, request: httpx.Request, *, writing: bool) -> httpx.TransportError:
    """The standard library's failure as the httpx exception httpcore would have raised for it."""
    message = str(error) or type(error).__name__
    if isinstance(error, TimeoutError):
        return httpx.WriteTimeout(message, request=request) if writing else httpx.ReadTimeout(message, request=request)
    if isinstance(error, (http.client.HTTPException, ValueError)):
        return httpx.RemoteProtocolError(message, request=request)
    return httpx.WriteError(message, request=request) if writing else httpx.ReadError(message, request=request)
