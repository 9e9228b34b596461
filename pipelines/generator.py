"""The upstream half of every answering pipeline: an `OpenAIGenerator` with the caller's key.

`OpenAIGenerator` is deprecated in haystack-ai 2.31 in favour of `OpenAIChatGenerator`; this service
uses it on purpose (its synchronous, string-in streaming callback is the design the product asks
for), so that one deprecation warning is silenced by its exact text and no other.
"""

import warnings
from collections.abc import Callable
from typing import Any, NotRequired, TypedDict

import httpx
from haystack import AsyncPipeline
from haystack.components.builders import PromptBuilder
from haystack.components.generators import OpenAIGenerator
from haystack.dataclasses import StreamingChunk
from haystack.utils import Secret

warnings.filterwarnings("ignore", message="The `OpenAIGenerator` component is deprecated", category=FutureWarning)


class UpstreamOptions(TypedDict):
    """How to reach the upstream for one request. Only `api_key` and `model` are required."""

    api_key: str
    model: str
    streaming_callback: NotRequired[Callable[[StreamingChunk], None] | None]
    base_url: NotRequired[str | None]
    timeout: NotRequired[float]
    max_retries: NotRequired[int]
    generation_kwargs: NotRequired[dict[str, Any] | None]
    transport: NotRequired[httpx.BaseTransport | None]
    validate_chunks: NotRequired[bool]


def build_generator(
    *,
    api_key: str,
    model: str,
    streaming_callback: Callable[[StreamingChunk], None] | None = None,
    base_url: str | None = None,
    timeout: float = 30.0,
    max_retries: int = 2,
    generation_kwargs: dict[str, Any] | None = None,
    transport: httpx.BaseTransport | None = None,
    validate_chunks: bool = False,
) -> OpenAIGenerator:
    """`transport`, when given, carries the upstream HTTP traffic (a shared connection pool); without
    it the OpenAI SDK builds its own client, TLS context and pool for this pipeline.

    `validate_chunks` makes the OpenAI SDK validate each streamed chunk against OpenAI's schema with
    pydantic-core (its `_strict_response_validation` client option) instead of building the models
    field by field in Python: less CPU per chunk (docs/performance.md, "Strict chunk parsing"), but a
    server whose chunks differ from OpenAI's schema (an unknown `finish_reason`, say) fails the stream
    instead of passing through.
    """
    generator = OpenAIGenerator(
        api_key=Secret.from_token(api_key),
        model=model,
        streaming_callback=streaming_callback,
        api_base_url=base_url,
        generation_kwargs=generation_kwargs,
        timeout=timeout,
        max_retries=max_retries,
        http_client_kwargs={"transport": transport} if transport is not None else None,
    )
    # The SDK reads this constructor option at parse time; OpenAIGenerator offers no way to pass it.
    generator.client._strict_response_validation = validate_chunks
    return generator


def answer_pipeline(prompt_builder: PromptBuilder, llm: Any) -> AsyncPipeline:
    """`prompt_builder` -> `llm`. Inputs: `{"prompt_builder": {"query": ..., <context>}}`; outputs `llm.replies`,
    `llm.meta`."""
    pipeline = AsyncPipeline()
    pipeline.add_component("prompt_builder", prompt_builder)
    pipeline.add_component("llm", llm)
    pipeline.connect("prompt_builder.prompt", "llm.prompt")
    return pipeline
