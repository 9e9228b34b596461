"""Bad requests are refused before any stream starts, with a status and a message naming the field."""

from typing import Any

import httpx
import pytest

from service.app import create_app
from tests.conftest import SettingsFactory
from tests.support import asgi_client_for

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
