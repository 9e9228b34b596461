"""Bad requests are refused before any stream starts, with a status and a message naming the field."""

from typing import Any

import httpx
import pytest

from service.app import create_app
from service.demo_model import Behaviour, DemoModelServer
from tests.conftest import LiveFactory, SettingsFactory
from tests.support.servers import asgi_client_for
from tests.support.sse import parse_sse

KEY = "sk-valid-KEY-SENTINEL"


async def post(client: httpx.AsyncClient, body: Any = None, **kwargs: Any) -> httpx.Response:
    return await client.post("/chat", json=body, **kwargs) if body is not None else await client.post("/chat", **kwargs)


def assert_refused(response: httpx.Response, status: int, field: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["retryable"] is False
    assert field in [error["field"] for error in body["errors"]]
    assert field in body["message"]
    assert KEY not in response.text  # a refused request's key is never echoed


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"api_key": KEY}, "query"),
        ({"query": "", "api_key": KEY}, "query"),
        ({"query": "   \n\t ", "api_key": KEY}, "query"),
        ({"query": 42, "api_key": KEY}, "query"),
        ({"query": ["a"], "api_key": KEY}, "query"),
        ({"query": None, "api_key": KEY}, "query"),
        ({"query": "bell\x07", "api_key": KEY}, "query"),
        ({"query": "nul\x00", "api_key": KEY}, "query"),
        ({"query": "hi"}, "api_key"),
        ({"query": "hi", "api_key": ""}, "api_key"),
        ({"query": "hi", "api_key": 12345}, "api_key"),
        ({"query": "hi", "api_key": "has space" + KEY}, "api_key"),
        ({"query": "hi", "api_key": "é" + KEY}, "api_key"),
        ({"query": "hi", "api_key": KEY * 100}, "api_key"),
        ({"query": "hi", "api_key": KEY, "qurey": "typo"}, "qurey"),
    ],
)
async def test_invalid_fields_are_422(asgi_client: httpx.AsyncClient, body: dict[str, Any], field: str) -> None:
    assert_refused(await post(asgi_client, body), 422, field)


async def test_body_that_is_not_an_object_is_422(asgi_client: httpx.AsyncClient) -> None:
    assert_refused(await post(asgi_client, ["query", KEY]), 422, "body")


async def test_malformed_json_is_400(asgi_client: httpx.AsyncClient) -> None:
    response = await post(asgi_client, content=b'{"query": "hi", "api_key": "' + KEY.encode(), headers=_json)
    assert_refused(response, 400, "body")


async def test_non_utf8_body_is_400(asgi_client: httpx.AsyncClient) -> None:
    assert_refused(await post(asgi_client, content=b'{"query": "\xff\xfe"}', headers=_json), 400, "body")


async def test_wrong_content_type_is_415(asgi_client: httpx.AsyncClient) -> None:
    response = await post(asgi_client, content=b'{"query": "hi"}', headers={"content-type": "text/plain"})
    assert_refused(response, 415, "content-type")


@pytest.mark.parametrize("header", ["Basic abc", "Bearer", "Bearer two words", "Token x"])
async def test_malformed_authorization_header_is_422(asgi_client: httpx.AsyncClient, header: str) -> None:
    assert_refused(await post(asgi_client, {"query": "hi"}, headers={"Authorization": header}), 422, "authorization")


async def test_query_over_the_configured_maximum_is_422(make_settings: SettingsFactory) -> None:
    app = create_app(make_settings(max_query_chars=10))
    async with app.router.lifespan_context(app), asgi_client_for(app) as client:
        ok_length = await post(client, {"query": "x" * 11, "api_key": KEY})
        assert_refused(ok_length, 422, "query")
        assert "at most 10 characters" in ok_length.json()["message"]


_json = {"content-type": "application/json"}


async def test_unknown_route_is_404_in_the_error_shape(asgi_client: httpx.AsyncClient) -> None:
    response = await asgi_client.get("/nope")
    assert response.status_code == 404 and response.json()["type"] == "http_error"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"query": "\u3000\u00a0\u2003", "api_key": KEY}, "query"),  # Unicode spaces only
        ({"query": "esc\x1b[31m", "api_key": KEY}, "query"),
        ({"query": "del\x7f", "api_key": KEY}, "query"),
        ({"query": {"text": "hi"}, "api_key": KEY}, "query"),
        ({"query": "hi", "api_key": "k" * 60_000}, "api_key"),  # absurdly long, under the body limit
        ({"query": "hi", "api_key": ["sk-a", "sk-b"]}, "api_key"),
        ({"query": "hi", "api_key": KEY, "model": "gpt-4o", "stream": False}, "model"),
    ],
)
async def test_more_invalid_fields_are_422(asgi_client: httpx.AsyncClient, body: dict[str, Any], field: str) -> None:
    assert_refused(await post(asgi_client, body), 422, field)


@pytest.mark.parametrize(
    "content",
    [
        b"[" * 30_000 + b"]" * 30_000,  # deeper than the JSON parser's recursion limit
        b'{"query": "hi", "api_key": "' + KEY.encode() + b'",}',
        b'{"query": "\xc3\x28", "api_key": "k"}',  # an invalid UTF-8 sequence
        b"{'query': 'hi'}",
    ],
)
async def test_bodies_that_are_not_json_are_400(asgi_client: httpx.AsyncClient, content: bytes) -> None:
    assert_refused(await post(asgi_client, content=content, headers=_json), 400, "body")


@pytest.mark.parametrize("content", [b"", b"null", b"42", b'"query"'])
async def test_bodies_that_are_not_an_object_are_422(asgi_client: httpx.AsyncClient, content: bytes) -> None:
    assert_refused(await post(asgi_client, content=content, headers=_json), 422, "body")


async def test_a_lone_surrogate_in_the_query_is_422(asgi_client: httpx.AsyncClient) -> None:
    content = b'{"query": "\\ud800", "api_key": "' + KEY.encode() + b'"}'
    assert_refused(await post(asgi_client, content=content, headers=_json), 422, "query")


@pytest.mark.parametrize(
    "header",
    [b"Bearer " + b"k" * 100_000, b"Bearer sk-\xe9t\xe9", b"Bearer sk-a\tb", b"Bearer sk-a\x7fb", b"Bearer  "],
)
async def test_absurd_authorization_headers_are_422(asgi_client: httpx.AsyncClient, header: bytes) -> None:
    """Regression: a tab or DEL inside a Bearer token passed the header check (the body's key refused them)."""
    response = await asgi_client.post("/chat", json={"query": "hi"}, headers=[(b"authorization", header)])
    assert_refused(response, 422, "authorization")


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x"])
async def test_form_content_types_are_415(asgi_client: httpx.AsyncClient, content_type: str) -> None:
    response = await post(asgi_client, content=b"query=hi&api_key=k", headers={"content-type": content_type})
    assert_refused(response, 415, "content-type")


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "Application/JSON", "application/merge+json"]
)
async def test_json_content_types_are_read_as_json(asgi_client: httpx.AsyncClient, content_type: str) -> None:
    """Regression: a +json type was read as JSON when valid, but answered 415 when invalid."""
    empty_query = b'{"query": "", "api_key": "k"}'  # reaches validation: refused for its query, not its type
    headers = {"content-type": content_type}
    assert_refused(await post(asgi_client, content=empty_query, headers=headers), 422, "query")
    assert_refused(await post(asgi_client, content=b"{", headers=headers), 400, "body")


@pytest.mark.parametrize("content", [b'{"query": "hi", "api_key": "k"}', b"{"])
async def test_a_body_without_content_type_is_415(asgi_client: httpx.AsyncClient, content: bytes) -> None:
    assert_refused(await post(asgi_client, content=content), 415, "content-type")


def test_template_syntax_in_the_query_reaches_the_model_literally(
    live_service: LiveFactory, upstream_server: DemoModelServer
) -> None:
    upstream_server.behaviour = Behaviour(tokens=1, first_token_delay=0, token_delay=0)
    service = live_service()
    queries = [
        "{{ config }}",
        "{% for x in range(3) %}x{% endfor %}",
        "{{ 7*7 }} {# a comment #}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{% raw %}unclosed",
        "{{ query }}",
    ]
    for query in queries:
        events = parse_sse(service.client.post("/chat", json={"query": query, "api_key": KEY}).text).events
        assert events[-1].event == "end", query
    assert [record.prompt for record in upstream_server.wait_for_requests(len(queries))] == queries
