"""`HTTP11Transport`, the upstream connection pool, against a scripted HTTP/1.1 server on loopback."""

import concurrent.futures
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import trustme

from service.upstream.http11 import HTTP11Transport
from tests.support.servers import refused_port
from tests.support.tinyproxy import run_tinyproxy, without_proxy_variables
from tests.support.waiting import wait_until

Reply = Callable[[socket.socket, int], None]  # writes the response to the n-th request (0-based)


class ScriptedServer:
    """Accepts connections and answers each request with `reply`; records what it saw."""

    def __init__(self, reply: Reply, tls: ssl.SSLContext | None = None) -> None:
        self.reply = reply
        self._tls = tls
        self.accepted = 0
        self.requests = 0
        self.closed_by_client = threading.Event()  # a connection read EOF from the client
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            if self._tls is not None:
                try:
                    conn = self._tls.wrap_socket(conn, server_side=True)
                except (OSError, ssl.SSLError):  # a client that does not trust us hangs up
                    conn.close()
                    continue
            self.accepted += 1
            self._connections.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        self.closed_by_client.set()
                        return
                    buffer += data
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                length = _content_length(head)
                while len(buffer) < length:
                    buffer += conn.recv(65536)
                buffer = buffer[length:]
                index, self.requests = self.requests, self.requests + 1
                self.reply(conn, index)
        except OSError:
            return

    def close(self) -> None:
        self._listener.close()
        for conn in self._connections:
            conn.close()


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


@pytest.fixture
def serve() -> Iterator[Callable[[Reply], ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(reply: Reply) -> ScriptedServer:
        servers.append(ScriptedServer(reply))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def sized(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


def chunked_head() -> bytes:
    return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream\r\n\r\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(transport=HTTP11Transport(max_connections=4), timeout=5) as client:
        yield client


def test_a_finished_response_leaves_its_connection_for_the_next_request(
    serve: Callable[[Reply], ScriptedServer], client: httpx.Client
) -> None:
    def reply(conn: socket.socket, n: int) -> None:
        if n % 2:
            conn.sendall(chunked_head() + chunk(b"one ") + chunk(b"two") + chunk(b""))
        else:
            conn.sendall(sized(b"hello %d" % n))

    server = serve(reply)
    bodies = [client.post(f"{server.url}/v1/x", json={"n": n}).content for n in range(4)]
    assert bodies == [b"hello 0", b"one two", b"hello 2", b"one two"]
    assert server.accepted == 1


def test_a_stream_is_read_chunk_by_chunk_as_the_server_sends(
    serve: Callable[[Reply], ScriptedServer], client: httpx.Client
) -> None:
    go_on = threading.Event()

    def reply(conn: socket.socket, n: int) -> None:
        conn.sendall(chunked_head() + chunk(b"data: first\n\n"))
        go_on.wait(5)
        conn.sendall(chunk(b"data: second\n\n") + chunk(b""))

    server = serve(reply)
    with client.stream("POST", f"{server.url}/v1/x") as response:
        parts = response.iter_raw()
        assert next(parts) == b"data: first\n\n"  # before the server has sent the rest
        go_on.set()
        assert list(parts) == [b"data: second\n\n"]


def test_a_response_closed_before_its_end_closes_its_connection(
    serve: Callable[[Reply], ScriptedServer], client: httpx.Client
) -> None:
    def reply(conn: socket.socket, n: int) -> None:
        conn.sendall(chunked_head() + chunk(b"data: %d\n\n" % n))  # and never the end

    server = serve(reply)
    for _ in range(2):
        with client.stream("POST", f"{server.url}/v1/x") as response:
            next(response.iter_raw())
    wait_until(server.closed_by_client.is_set, message="the server to see the client close")
    assert server.accepted == 2


def test_an_idle_connection_the_server_dropped_is_replaced(
    serve: Callable[[Reply], ScriptedServer], client: httpx.Client
) -> None:
    dropped = threading.Event()

    def reply(conn: socket.socket, n: int) -> None:
        conn.sendall(sized(b"answer"))
        conn.shutdown(socket.SHUT_RDWR)  # a keep-alive timeout on the server's side, without notice
        dropped.set()

    server = serve(reply)
    assert client.get(f"{server.url}/a").content == b"answer"
    assert dropped.wait(5)
    assert client.get(f"{server.url}/b").content == b"answer"  # the pool saw the close: a new connection
    assert server.accepted == 2


@pytest.mark.parametrize(
    "cut",
    [
        pytest.param(sized(b"0123456789")[:-5], id="content-length"),
        pytest.param(chunked_head() + chunk(b"data: a\n\n") + b"20\r\nonly part", id="chunked"),
    ],
)
def test_a_body_cut_short_is_a_protocol_error(
    serve: Callable[[Reply], ScriptedServer], client: httpx.Client, cut: bytes
) -> None:
    def reply(conn: socket.socket, n: int) -> None:
        conn.sendall(cut)
        conn.close()

    server = serve(reply)
    with pytest.raises(httpx.RemoteProtocolError):
        client.get(f"{server.url}/x")


def test_a_silent_server_is_a_read_timeout(serve: Callable[[Reply], ScriptedServer], client: httpx.Client) -> None:
    server = serve(lambda conn, n: None)
    with pytest.raises(httpx.ReadTimeout):
        client.get(f"{server.url}/x", timeout=0.2)


def test_nobody_listening_is_a_connect_error(client: httpx.Client) -> None:
    with refused_port() as port, pytest.raises(httpx.ConnectError):
        client.get(f"http://127.0.0.1:{port}/x")


def test_a_full_pool_makes_a_request_wait_then_time_out(serve: Callable[[Reply], ScriptedServer]) -> None:
    server = serve(lambda conn, n: conn.sendall(chunked_head() + chunk(b"data: %d\n\n" % n)))
    with httpx.Client(transport=HTTP11Transport(max_connections=1)) as client:
        with client.stream("GET", f"{server.url}/held") as held:
            next(held.iter_raw())
            with pytest.raises(httpx.PoolTimeout):
                client.get(f"{server.url}/waits", timeout=httpx.Timeout(5, pool=0.1))
        with client.stream("GET", f"{server.url}/next") as response:  # the slot came back with the close
            assert next(response.iter_raw()) == b"data: 1\n\n"


def test_closing_the_pool_closes_its_idle_connections(serve: Callable[[Reply], ScriptedServer]) -> None:
    server = serve(lambda conn, n: conn.sendall(sized(b"ok")))
    transport = HTTP11Transport(max_connections=2)
    with httpx.Client(transport=transport) as client:
        assert client.get(f"{server.url}/x").content == b"ok"
        assert not server.closed_by_client.is_set()
    wait_until(server.closed_by_client.is_set, message="the idle connection to be closed")


def test_the_socket_comes_before_the_request_so_a_stalled_one_can_be_cut(
    serve: Callable[[Reply], ScriptedServer],
) -> None:
    asked = threading.Event()
    server = serve(lambda conn, n: asked.set())  # reads the request, never answers
    sockets: list[socket.socket] = []
    transport = HTTP11Transport(max_connections=1)
    request = httpx.Request("GET", f"{server.url}/x", extensions={"timeout": {"read": 30}})
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(transport.handle_request, request, on_socket=sockets.append)
        assert asked.wait(5)
        sockets[0].shutdown(socket.SHUT_RDWR)  # what RunTransport.abort does when its run is cancelled
        with pytest.raises(httpx.RemoteProtocolError):
            pending.result(timeout=5)  # woken by the shutdown, long before the 30 s read timeout
    transport.close()


def test_cutting_the_socket_ends_a_stream_in_flight(serve: Callable[[Reply], ScriptedServer]) -> None:
    server = serve(lambda conn, n: conn.sendall(chunked_head() + chunk(b"data: a\n\n")))
    sockets: list[socket.socket] = []
    transport = HTTP11Transport(max_connections=1)
    response = transport.handle_request(httpx.Request("GET", f"{server.url}/x"), on_socket=sockets.append)
    parts = response.iter_raw()
    assert next(parts) == b"data: a\n\n"
    sockets[0].shutdown(socket.SHUT_RDWR)
    with pytest.raises(httpx.RemoteProtocolError):
        next(parts)
    response.close()
    transport.close()


def test_https_with_a_trusted_certificate_and_refused_without(serve: Callable[[Reply], ScriptedServer]) -> None:
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(server_context)
    server = ScriptedServer(lambda conn, n: conn.sendall(sized(b"secure %d" % n)), tls=server_context)
    url = server.url.replace("http://127.0.0.1", "https://localhost")
    try:
        trusting = ssl.create_default_context()
        authority.configure_trust(trusting)
        with httpx.Client(transport=HTTP11Transport(max_connections=2, ssl_context=trusting)) as client:
            assert [client.get(f"{url}/x").content for _ in range(2)] == [b"secure 0", b"secure 1"]
        assert server.accepted == 1  # kept alive over TLS too
        with httpx.Client(transport=HTTP11Transport(max_connections=2)) as client, pytest.raises(httpx.ConnectError):
            client.get(f"{url}/x")  # the default roots do not include the test's authority
    finally:
        server.close()


def test_https_goes_through_the_proxy_in_a_connect_tunnel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """TLS with the upstream itself, inside the proxy's tunnel: the certificate checked is the upstream's."""
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(server_context)
    server = ScriptedServer(lambda conn, n: conn.sendall(sized(b"tunnelled %d" % n)), tls=server_context)
    url = server.url.replace("http://127.0.0.1", "https://localhost")
    trusting = ssl.create_default_context()
    authority.configure_trust(trusting)
    without_proxy_variables(monkeypatch)
    try:
        with run_tinyproxy(tmp_path) as proxy:
            monkeypatch.setenv("HTTPS_PROXY", proxy.url)
            with httpx.Client(transport=HTTP11Transport(max_connections=2, ssl_context=trusting)) as client:
                assert [client.get(f"{url}/x").content for _ in range(2)] == [b"tunnelled 0", b"tunnelled 1"]
            port = url.rpartition(":")[2]
            assert [line for line in proxy.requests() if line.startswith("CONNECT")] == [
                f"CONNECT localhost:{port} HTTP/1.0"  # one tunnel, kept alive for both requests
            ]
    finally:
        server.close()
