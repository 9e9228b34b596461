"""Every refusal before a stream has one shape, `{"type", "message", "retryable", "errors"}`, the
framework's own (an unknown path, a wrong method, an empty body) included."""

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from service.app import create_app
from tests.conftest import SettingsFactory
from tests.support.servers import asgi_client_for

KEY = "sk-shape"
JSON = {"content-type": "application/json"}


def assert_refusal(response: httpx.Response, status: int, error_type: str) -> list[dict[str, str]]:
    body: dict[str, Any] = response.json()
    assert (response.status_code, body["type"]) == (status, error_type), body
    assert set(body) == {"type", "message", "retryable", "errors"}, body
    assert isinstance(body["errors"], list)
    return list(body["errors"])


@pytest.mark.parametrize("path", ["/chat", "/runs"])
async def test_an_empty_body_is_a_400_invalid_json_as_documented(asgi_client: httpx.AsyncClient, path: str) -> None:
    """Regression: an empty body was a 422 `body: Field required`; the contract says a body that is not
    valid JSON is a 400, and an empty one is not valid JSON."""
    errors = assert_refusal(await asgi_client.post(path, content=b"", headers=JSON), 400, "invalid_json")
    assert errors == [{"field": "body", "message": "is empty: send a JSON object"}]


async def test_a_json_value_that_is_not_an_object_is_a_422_naming_the_body(asgi_client: httpx.AsyncClient) -> None:
    errors = assert_refusal(await asgi_client.post("/chat", content=b"null", headers=JSON), 422, "invalid_request")
    assert errors == [{"field": "body", "message": "must be a JSON object"}]


@pytest.mark.parametrize("path", ["/nope", "/static/nope.js", "/runs/run_x/events/more"])
async def test_an_unknown_path_is_a_404_naming_the_path(asgi_client: httpx.AsyncClient, path: str) -> None:
    """Regression: `{"type": "http_error", "message": "Not Found"}`, without `errors`."""
    errors = assert_refusal(await asgi_client.get(path), 404, "not_found")
    assert errors == [{"field": "path", "message": "no such path"}]


async def test_a_wrong_method_is_a_405_naming_the_allowed_ones(asgi_client: httpx.AsyncClient) -> None:
    """Regression: `{"type": "http_error", "message": "Method Not Allowed"}`, without `errors`."""
    response = await asgi_client.get("/chat")
    assert response.headers["allow"] == "POST"
    errors = assert_refusal(response, 405, "method_not_allowed")
    assert errors == [{"field": "method", "message": "must be one of: POST"}]
    assert response.json()["message"] == "GET is not allowed here; use POST."


async def test_the_domain_refusals_have_errors_too(make_settings: SettingsFactory) -> None:
    app: FastAPI = create_app(make_settings(max_streams=1))
    async with app.router.lifespan_context(app), asgi_client_for(app) as client:
        missing = await client.get("/runs/run_nope/events")
        assert assert_refusal(missing, 404, "run_not_found") == [
            {"field": "run_id", "message": "no such run, or it is no longer held"}
        ]
        gone = await client.get("/conversations/conv_nope")
        assert assert_refusal(gone, 404, "not_found") == [
            {"field": "conversation_id", "message": "no such conversation"}
        ]
        expired = await client.post("/chat", json={"query": "q", "api_key": KEY}, headers={"last-event-id": "run_x:3"})
        assert assert_refusal(expired, 410, "run_expired") == [
            {"field": "last-event-id", "message": "names a run that is no longer held"}
        ]
        app.state.serving.draining = True
        draining = await client.post("/chat", json={"query": "q", "api_key": KEY})
        assert assert_refusal(draining, 503, "shutting_down") == []  # nothing in the request is at fault
