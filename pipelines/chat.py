"""The chat pipeline: a prompt of the earlier turns and the query -> `OpenAIGenerator`, one per request.

`history` is the conversation so far, as plain `{"role", "content"}` mappings (oldest first); the
template renders them before the query, and renders the query alone when there are none.
"""

from collections.abc import Mapping, Sequence

from haystack import AsyncPipeline
from typing_extensions import Unpack

from pipelines.generator import UpstreamOptions, answer_pipeline, build_generator
from pipelines.prompt import ContextPromptBuilder, load_template

CHAT_TEMPLATE = load_template("chat.jinja2")


def build_chat_pipeline(
    *,
    history: Sequence[Mapping[str, str]] = (),
    template: str = CHAT_TEMPLATE,
    **upstream: Unpack[UpstreamOptions],
) -> AsyncPipeline:
    """Inputs: `{"prompt_builder": {"query": ...}}`. Outputs: `llm.replies` and `llm.meta`."""
    prompt_builder = ContextPromptBuilder(template, {"history": [dict(turn) for turn in history]})
    return answer_pipeline(prompt_builder, build_generator(**upstream))
