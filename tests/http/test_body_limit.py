"""A body over HAYSTREAM_MAX_BODY_BYTES is refused with 413, before it has been read whole."""

import json
import socket

import httpx
import pytest
from pydantic import ValidationError

from service.app import create_app
from service.settings import Settings
from tests.conftest import LiveFactory, SettingsFactory
from tests.support.probes import port_of, read_until
from tests.support.servers import asgi_client_for

LIMIT = 2048
KEY = "sk-limits-SENTINEL-0b5d"
JSON = {"content-type": "application/json"}


def assert_413(status: int, headers: httpx.Headers, body: bytes) -> None:
    assert status == 413
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    error = json.loads(body)
    assert error["type"] == "body_too_large" and error["retryable"] is False
    assert error["message"] == f"body: must be at most {LIMIT} bytes"
    assert error["errors"] == [{"field": "body", "message": f"must be at most {LIMIT} bytes"}]


def padded(size: int) -> bytes:
    """A valid request body of exactly `size` bytes (trailing whitespace is valid JSON)."""
    body = json.dumps({"query": "hi", "api_key": KEY}).encode()
    return body + b" " * (size - len(body))


async def test_a_declared_length_over_the_limit_is_413(make_settings: SettingsFactory) -> None:
    app = create_app(make_settings(max_body_bytes=LIMIT, max_query_chars=100))
    async with app.router.lifespan_context(app), asgi_client_for(app) as client:
        response = await client.post("/chat", content=padded(LIMIT + 1), headers=JSON)
    assert_413(response.status_code, response.headers, response.content)
    assert KEY not in response.text


async def test_a_body_at_the_limit_is_read(make_settings: SettingsFactory) -> None:
    app = create_app(make_settings(max_body_bytes=LIMIT, max_query_chars=100))
    async with app.router.lifespan_context(app), asgi_client_for(app) as client:
        response = await client.post("/chat", content=padded(LIMIT) + b"x", headers=JSON)
        assert response.status_code == 413
        at_limit = await client.post("/chat", content=padded(LIMIT)[:-1] + b"}", headers=JSON)
        assert at_limit.status_code == 400  # read and parsed (the stray brace is invalid JSON): not refused


def test_a_chunked_upload_is_refused_while_the_client_is_still_sending(live_service: LiveFactory) -> None:
    service = live_service(max_body_bytes=LIMIT, max_query_chars=100)
    with socket.create_connection(("127.0.0.1", port_of(service.url)), timeout=10) as sock:
        head = b"POST /chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        sock.sendall(head)
        part = b'{"query": "' + b"x" * 1000
        for _ in range(3):  # 3000 bytes: over the limit, and the upload is not finished (no last chunk)
            sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
        response = read_until(sock, b"}")
        while data := sock.recv(65536):  # the server closes the connection: the rest is never read
            response += data
    head_bytes, _, body = response.partition(b"\r\n\r\n")
    status_line, *header_lines = head_bytes.decode().split("\r\n")
    headers = httpx.Headers([(line.partition(": ")[0], line.partition(": ")[2]) for line in header_lines])
    assert_413(int(status_line.split()[1]), headers, body)
    assert service.client.post("/chat", json={"query": "hi", "api_key": KEY}).status_code == 200


def test_a_declared_length_over_the_limit_is_refused_before_any_body_is_sent(live_service: LiveFactory) -> None:
    service = live_service(max_body_bytes=LIMIT, max_query_chars=100)
    with socket.create_connection(("127.0.0.1", port_of(service.url)), timeout=10) as sock:
        sock.sendall(
            b"POST /chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n"
        )
        response = read_until(sock, b"}")
    assert response.startswith(b"HTTP/1.1 413 ")


def test_the_limit_is_bounded_and_must_hold_the_longest_query() -> None:
    with pytest.raises(ValidationError, match="max_body_bytes"):
        Settings(max_body_bytes=512)
    with pytest.raises(ValidationError, match="max_body_bytes"):
        Settings(max_body_bytes=10_000, max_query_chars=8_000)
    assert Settings().max_body_bytes == 64 * 1024
    assert Settings(max_body_bytes=5_000, max_query_chars=900).max_body_bytes == 5_000


async def test_the_openapi_document_lists_every_refusal(asgi_client: httpx.AsyncClient) -> None:
    """Regression: /openapi.json answered 500 (FastAPI could not find the SSE response's status code)."""
    response = await asgi_client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert {"200", "400", "413", "415", "422", "503"} <= set(document["paths"]["/chat"]["post"]["responses"])
