"""The bare relay the issue compares this service with: FastAPI, `AsyncOpenAI`, and nothing else.

    python -m bench.relay --port PORT --base-url URL --model MODEL

What an engineer writes in an afternoon to stream an answer to a browser: no pipeline, no thread,
no run store, no resumption, no admission; each delta goes out as the service's `data` event and the
stream ends with `end`, so the benchmark's client reads both the same way. Two ways to use the
caller's key, both common: `--client per-request` builds an `AsyncOpenAI` client for each request
(`AsyncOpenAI(api_key=...)`: a new connection pool and TLS context each time, as the issue's relay
did), `--client shared` keeps one and passes the key with `with_options` (one pool: the stronger
baseline). It is the baseline for the first token and the CPU of one request at one client
(`python -m bench.run --only ttft1 request`), not a product: an upstream failure just ends its stream.
"""

import argparse
import json
from collections.abc import AsyncIterator

import uvicorn
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from openai import AsyncOpenAI
from pydantic import BaseModel


class Ask(BaseModel):
    query: str
    api_key: str


def relay_app(base_url: str, model: str, shared_client: bool) -> FastAPI:
    app = FastAPI()
    shared = AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0)

    @app.post("/chat")
    async def chat(ask: Ask) -> StreamingResponse:
        if shared_client:
            client = shared.with_options(api_key=ask.api_key)
        else:
            client = AsyncOpenAI(base_url=base_url, api_key=ask.api_key, max_retries=0)

        async def events() -> AsyncIterator[str]:
            stream = await client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": ask.query}], stream=True
            )
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    yield f"event: data\ndata: {json.dumps(chunk.choices[0].delta.content)}\n\n"
            yield "event: end\ndata: {}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--model", default="demo")
    parser.add_argument("--client", choices=["per-request", "shared"], default="shared")
    args = parser.parse_args()
    app = relay_app(args.base_url, args.model, shared_client=args.client == "shared")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
