"""Cross-origin access: off by default, exactly the listed origins, never a wildcard with credentials."""

from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import ValidationError

from service.app import create_app
from service.demo_model import Behaviour, DemoModelServer
from service.settings import Settings
from tests.conftest import LiveFactory, SettingsFactory
from tests.support.servers import asgi_client_for
from tests.support.sse import parse_sse

ALLOWED = "https://app.example.com"
OTHER = "https://evil.example.net"
PREFLIGHT = {"access-control-request-method": "POST", "access-control-request-headers": "content-type,last-event-id"}


@pytest.fixture
async def cors_client(make_settings: SettingsFactory) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(cors_origins=f"{ALLOWED}, http://localhost:5173"))
    async with app.router.lifespan_context(app), asgi_client_for(app) as client:
        yield client


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {name: value for name, value in response.headers.items() if name.startswith("access-control-")}


async def test_a_preflight_from_an_allowed_origin_gets_the_policy(cors_client: httpx.AsyncClient) -> None:
    response = await cors_client.options("/chat", headers={"origin": ALLOWED} | PREFLIGHT)
    assert response.status_code == 200
    headers = cors_headers(response)
    assert headers["access-control-allow-origin"] == ALLOWED
    assert set(headers["access-control-allow-methods"].split(", ")) == {"POST", "GET", "DELETE", "OPTIONS"}
    allowed = {name.lower() for name in headers["access-control-allow-headers"].split(", ")}
    assert {"content-type", "authorization", "idempotency-key", "last-event-id"} <= allowed
    assert "access-control-allow-credentials" not in headers  # off unless configured
    assert "Origin" in response.headers["vary"]


async def test_a_preflight_may_ask_for_the_bearer_header(cors_client: httpx.AsyncClient) -> None:
    headers = {
        "origin": ALLOWED,
        "access-control-request-method": "POST",
        "access-control-request-headers": "Authorization",
    }
    response = await cors_client.options("/chat", headers=headers)
    assert response.status_code == 200 and cors_headers(response)["access-control-allow-origin"] == ALLOWED


async def test_a_disallowed_origin_is_not_allowed(cors_client: httpx.AsyncClient) -> None:
    """What makes a browser block the request: no Access-Control-Allow-Origin (Starlette's preflight
    refusal still lists the allowed methods and headers, which tells an origin nothing it may use)."""
    preflight = await cors_client.options("/chat", headers={"origin": OTHER} | PREFLIGHT)
    assert preflight.status_code == 400 and "access-control-allow-origin" not in cors_headers(preflight)
    request = await cors_client.get("/healthz", headers={"origin": OTHER})
    assert request.status_code == 200 and "access-control-allow-origin" not in cors_headers(request)


@pytest.mark.parametrize(
    "asked",
    [
        {"access-control-request-method": "PUT"},
        {"access-control-request-method": "POST", "access-control-request-headers": "content-type,x-api-key"},
    ],
)
async def test_a_preflight_outside_the_policy_is_refused(cors_client: httpx.AsyncClient, asked: dict[str, str]) -> None:
    """A preflight answered with a status outside 200-299 fails in the browser (Fetch's CORS check)."""
    response = await cors_client.options("/chat", headers={"origin": ALLOWED} | asked)
    assert response.status_code == 400


async def test_a_request_from_an_allowed_origin_can_read_retry_after(cors_client: httpx.AsyncClient) -> None:
    response = await cors_client.get("/readyz", headers={"origin": "http://localhost:5173"})
    headers = cors_headers(response)
    assert headers["access-control-allow-origin"] == "http://localhost:5173"
    assert headers["access-control-expose-headers"] == "location, retry-after"
    assert "Origin" in response.headers.get_list("vary")


async def test_a_body_too_large_still_tells_an_allowed_origin_why(
    cors_client: httpx.AsyncClient, make_settings: SettingsFactory
) -> None:
    """Without CORS headers a page would see a network error, not the 413's `body_too_large`."""
    body = b'{"query": "' + b"x" * make_settings().max_body_bytes + b'"}'
    headers = {"origin": ALLOWED, "content-type": "application/json"}
    response = await cors_client.post("/chat", content=body, headers=headers)
    assert response.status_code == 413
    assert cors_headers(response)["access-control-allow-origin"] == ALLOWED


async def test_no_origins_means_no_cors(asgi_client: httpx.AsyncClient) -> None:
    preflight = await asgi_client.options("/chat", headers={"origin": ALLOWED} | PREFLIGHT)
    assert preflight.status_code == 405 and cors_headers(preflight) == {}
    request = await asgi_client.get("/healthz", headers={"origin": ALLOWED})
    assert cors_headers(request) == {}


async def test_credentials_are_allowed_only_when_configured(make_settings: SettingsFactory) -> None:
    app = create_app(make_settings(cors_origins=[ALLOWED], cors_allow_credentials=True))
    async with app.router.lifespan_context(app), asgi_client_for(app) as client:
        preflight = await client.options("/chat", headers={"origin": ALLOWED} | PREFLIGHT)
        request = await client.get("/healthz", headers={"origin": ALLOWED})
    for response in (preflight, request):
        assert cors_headers(response)["access-control-allow-credentials"] == "true"
        assert cors_headers(response)["access-control-allow-origin"] == ALLOWED


async def test_a_wildcard_without_credentials_allows_any_origin(make_settings: SettingsFactory) -> None:
    app = create_app(make_settings(cors_origins="*"))
    async with app.router.lifespan_context(app), asgi_client_for(app) as client:
        preflight = await client.options("/chat", headers={"origin": OTHER} | PREFLIGHT)
    assert preflight.status_code == 200
    assert cors_headers(preflight)["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in cors_headers(preflight)


def test_a_wildcard_with_credentials_is_refused_at_start_up() -> None:
    with pytest.raises(ValidationError, match="cannot be combined with cors_allow_credentials"):
        Settings.model_validate({"cors_origins": "*", "cors_allow_credentials": True})


def test_the_stream_to_an_allowed_origin_carries_allow_origin(
    live_service: LiveFactory, upstream_server: DemoModelServer
) -> None:
    upstream_server.behaviour = Behaviour(tokens=3, first_token_delay=0, token_delay=0)
    service = live_service(cors_origins=[ALLOWED])
    body = {"query": "Hi?", "api_key": "sk-cors"}
    response = service.client.post("/chat", json=body, headers={"origin": ALLOWED})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert "Origin" in response.headers["vary"]
    assert [e.event for e in parse_sse(response.text).events][-1] == "end"
    same_origin = service.client.post("/chat", json=body, headers={"origin": service.url})
    assert "access-control-allow-origin" not in same_origin.headers
