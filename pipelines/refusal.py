"""A pipeline that answers with a fixed text and never calls an upstream: the input guard's refusal.

`CannedReply` stands where the generator stands and behaves like it (the text goes through the
streaming callback, `replies` and `meta` come back with a finish reason), so the service streams a
refusal through the same run machinery, events and JSON mode as a real answer, at no cost.
"""

from collections.abc import Callable
from typing import Any

from haystack import AsyncPipeline, component
from haystack.dataclasses import StreamingChunk

from pipelines.generator import answer_pipeline
from pipelines.prompt import prompt_builder

FINISH_REASON = "guarded"


@component
class CannedReply:
    def __init__(self, text: str, streaming_callback: Callable[[StreamingChunk], None] | None = None) -> None:
        self.text = text
        self.streaming_callback = streaming_callback

    @component.output_types(replies=list[str], meta=list[dict[str, Any]])
    def run(self, prompt: str) -> dict[str, Any]:
        if self.streaming_callback is not None:
            self.streaming_callback(StreamingChunk(content=self.text))
        return {"replies": [self.text], "meta": [{"finish_reason": FINISH_REASON, "usage": None}]}


def build_refusal_pipeline(
    text: str, streaming_callback: Callable[[StreamingChunk], None] | None = None
) -> AsyncPipeline:
    """Inputs: `{"prompt_builder": {"query": ...}}` (ignored). Outputs: `llm.replies` and `llm.meta`."""
    return answer_pipeline(prompt_builder("{{ query }}"), CannedReply(text, streaming_callback))
