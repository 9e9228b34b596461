"""The chat pipeline: `PromptBuilder` -> `OpenAIGenerator`, one per request, with the caller's key.

`OpenAIGenerator` is deprecated in haystack-ai 2.31 in favour of `OpenAIChatGenerator`; this service
uses it on purpose (its synchronous, string-in streaming callback is the design the product asks
for), so that one deprecation warning is silenced by its exact text and no other.

The query is a template variable, never part of the template, so `{{ 7*7 }}` in a question reaches
the model literally.
"""

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from haystack import AsyncPipeline
from haystack.components.builders import PromptBuilder
from haystack.components.generators import OpenAIGenerator
from haystack.dataclasses import StreamingChunk
from haystack.utils import Secret

warnings.filterwarnings("ignore", message="The `OpenAIGenerator` component is deprecated", category=FutureWarning)

TEMPLATES = Path(__file__).parent / "templates"
CHAT_TEMPLATE = (TEMPLATES / "chat.jinja2").read_text()


def build_chat_pipeline(
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
    template: str = CHAT_TEMPLATE,
) -> AsyncPipeline:
    """Inputs: `{"prompt_builder": {"query": ...}}`. Outputs: `llm.replies` and `llm.meta`.

    `transport`, when given, carries the upstream HTTP traffic (a shared connection pool); without
    it the OpenAI SDK builds its own client, TLS context and pool for this pipeline.

    `validate_chunks` makes the OpenAI SDK validate each streamed chunk against OpenAI's schema with
    pydantic-core (its `_strict_response_validation` client option) instead of building the models
    field by field in Python: about 45 us less CPU per chunk, but a server whose chunks differ from
    OpenAI's schema (an unknown `finish_reason`, say) fails the stream instead of passing through.
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
    pipeline = AsyncPipeline()
    # Naming the variables spares PromptBuilder a second parse of the template (half its build cost).
    prompt_builder = PromptBuilder(template=template, required_variables=["query"], variables=["query"])
    pipeline.add_component("prompt_builder", prompt_builder)
    pipeline.add_component("llm", generator)
    pipeline.connect("prompt_builder.prompt", "llm.prompt")
    return pipeline
