"""/v1's routes in-process: the models list, the model choosing the pipeline, and OpenAI-shaped
refusals on /v1 paths only (POST /chat keeps the service's own error body)."""

from pathlib import Path

import httpx
import pytest

from service.app import create_app
from tests.conftest import SettingsFactory
from tests.support.servers import asgi_client_for

SAMPLE = Path(__file__).resolve().parents[2] / "pipelines" / "sample_docs"
AUTH = {"authorization": "Bearer sk-routes-SENTINEL-1a2b"}
MESSAGES = [{"role": "user", "content": "How often should I feed my sourdough starter?"}]


async def test_models_are_listed_in_openais_shape(make_settings: SettingsFactory) -> None:
    app = create_app(make_settings(documents_dir=SAMPLE))
    async with app.router.lifespan_context(app), asgi_client_for(app) as client:
        body = (await client.get("/v1/models")).json()
    assert body["object"] == "list"
    assert [(model["id"], model["object"]) for model in body["data"]] == [
        ("haystream-chat", "model"),
        ("haystream-documents", "model"),
    ]
    assert all(isinstance(model["created"], int) and model["owned_by"] for model in body["data"])


@pytest.mark.parametrize(
    ("path", "body", "status", "shape"),
    [
        ("/v1/chat/completions", {"model": "haystream-chat"}, 400, "openai"),
        ("/chat", {"api_key": "sk-x"}, 422, "service"),
        ("/v1/chat/completions", {"model": "haystream-chat", "messages": MESSAGES, "temperature": -1}, 400, "openai"),
    ],
)
async def test_refusals_take_the_shape_of_their_paths_api(
    asgi_client: httpx.AsyncClient, path: str, body: dict[str, object], status: int, shape: str
) -> None:
    response = await asgi_client.post(path, json=body, headers=AUTH)
    assert response.status_code == status
    if shape == "openai":
        assert set(response.json()["error"]) >= {"message", "type", "param", "code"}
    else:
        assert response.json()["type"] == "invalid_request"


async def test_a_request_without_a_key_is_refused_before_its_body_is_read(asgi_client: httpx.AsyncClient) -> None:
    response = await asgi_client.post("/v1/chat/completions", json={"not": "a completion"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


async def test_unknown_fields_are_ignored_not_refused(asgi_client: httpx.AsyncClient) -> None:
    body = {"model": "nope", "messages": MESSAGES, "n": 1, "tools": [], "top_p": 0.5, "seed": 3}
    response = await asgi_client.post("/v1/chat/completions", json=body, headers=AUTH)
    assert response.status_code == 404 and response.json()["error"]["code"] == "model_not_found"


async def test_headers_for_resume_are_refused_on_a_whole_completion(asgi_client: httpx.AsyncClient) -> None:
    body = {"model": "haystream-chat", "messages": MESSAGES}
    response = await asgi_client.post("/v1/chat/completions", json=body, headers=AUTH | {"idempotency-key": "k"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "idempotency-key"


async def test_image_parts_are_refused(asgi_client: httpx.AsyncClient) -> None:
    image = {"type": "image_url", "image_url": {"url": "data:,"}}
    body = {"model": "haystream-chat", "messages": [{"role": "user", "content": [image]}]}
    response = await asgi_client.post("/v1/chat/completions", json=body, headers=AUTH)
    assert response.status_code == 400 and response.json()["error"]["param"].startswith("messages")
