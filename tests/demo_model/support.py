"""Shared helpers of the demo model's tests: the client's key and prompt, a fast behaviour, stream readers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import openai
from openai.types.chat import ChatCompletionChunk

from service.demo_model import Behaviour, DemoModelServer, RequestRecord

KEY = "sk-demo-test-key-123"
PROMPT = "What is the capital of France?"
MESSAGES: list[Any] = [{"role": "user", "content": PROMPT}]
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def fast(**overrides: Any) -> Behaviour:
    """A behaviour with no pacing, plus ``overrides``."""
    return Behaviour(**{"token_delay": 0, "first_token_delay": 0, **overrides})


def stream_text(client: openai.OpenAI, prompt: str = PROMPT, **kwargs: Any) -> tuple[str, list[ChatCompletionChunk]]:
    """Stream a completion and return the assembled text and every chunk."""
    messages: list[Any] = [{"role": "user", "content": prompt}]
    stream: openai.Stream[ChatCompletionChunk] = client.chat.completions.create(
        model="demo", messages=messages, stream=True, **kwargs
    )
    chunks = list(stream)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    return text, chunks


def settled(server: DemoModelServer, n: int = 1) -> list[RequestRecord]:
    """The first ``n`` records, once the server has finished with each of them."""
    records = server.wait_for_requests(n)
    assert all(record.closed.wait(1.0) for record in records)
    return records


def raw_stream_lines(server: DemoModelServer) -> list[str]:
    body = {"model": "demo", "messages": MESSAGES, "stream": True}
    with (
        httpx.Client() as http,
        http.stream("POST", f"{server.base_url}/chat/completions", json=body) as response,
    ):
        return list(response.iter_lines())
