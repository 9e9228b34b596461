"""HTTP/1.1 at the socket: raw requests the server must answer, then close on."""

from __future__ import annotations

import socket

import pytest

from service.demo_model import DemoModelServer


@pytest.mark.parametrize(
    ("raw", "status_line"),
    [
        (b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: \xb2\r\n\r\n", b"HTTP/1.1 400 Bad Request"),
        (b"POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", b"HTTP/1.1 411 "),
        (b"nonsense\r\n\r\n", b"HTTP/1.1 400 Bad Request"),
        (b"GET /health HTTP/1.0\r\n\r\n", b"HTTP/1.1 200 OK"),
    ],
)
def test_raw_requests_get_a_response_and_a_closed_connection(
    server: DemoModelServer, raw: bytes, status_line: bytes
) -> None:
    """Regression: a non-ASCII digit in Content-Length used to crash the connection handler."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(raw)
        response = b""
        while data := sock.recv(65536):
            response += data
    assert response.startswith(status_line)
    assert b"Connection: close" in response
