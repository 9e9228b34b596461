"""The API schema (`/openapi.json`, behind `/docs`) renders."""

import httpx


async def test_the_api_schema_renders_with_the_stream_documented(asgi_client: httpx.AsyncClient) -> None:
    """Regression: with `response_class=EventStreamResponse` (whose __init__ has no status_code) and no
    `status_code` on the route, FastAPI failed with UnboundLocalError and /openapi.json answered 500."""
    response = await asgi_client.get("/openapi.json")
    assert response.status_code == 200
    responses = response.json()["paths"]["/chat"]["post"]["responses"]
    assert "text/event-stream" in responses["200"]["content"]
    assert {"400", "422", "503"} <= set(responses)
