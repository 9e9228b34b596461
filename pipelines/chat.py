"""The chat pipeline: `PromptBuilder` -> `OpenAIGenerator`, one per request.

Its inputs are `{"prompt_builder": {"query": ..., "history": [...]}}`: `history` is the conversation so
far, as plain `{"role", "content"}` mappings (oldest first), optional; the template renders the turns
before the query, and the query alone when there are none.
"""

from haystack import AsyncPipeline
from typing_extensions import Unpack

from pipelines.generator import UpstreamOptions, answer_pipeline, build_generator
from pipelines.prompt import load_template, prompt_builder

CHAT_TEMPLATE = load_template("chat.jinja2")


def build_chat_pipeline(*, template: str = CHAT_TEMPLATE, **upstream: Unpack[UpstreamOptions]) -> AsyncPipeline:
    """Inputs: `{"prompt_builder": {"query": ..., "history": ...}}`. Outputs: `llm.replies` and `llm.meta`."""
    return answer_pipeline(prompt_builder(template, ("history",)), build_generator(**upstream))
