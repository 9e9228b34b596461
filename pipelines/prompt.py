"""`ContextPromptBuilder`: a `PromptBuilder` whose context (earlier turns, retrieved documents) is
bound when the per-request pipeline is built, so the pipeline still runs from the query alone.

The query and the context are template variables, never part of the template: `{{ 7*7 }}` in a
question, in an earlier answer or in a document reaches the model literally.
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from haystack import component
from haystack.components.builders import PromptBuilder

TEMPLATES = Path(__file__).parent / "templates"


def load_template(name: str) -> str:
    return (TEMPLATES / name).read_text(encoding="utf-8")


@component
class ContextPromptBuilder:
    def __init__(self, template: str, context: Mapping[str, Any] | None = None) -> None:
        self.template = template
        self.context = dict(context or {})
        # Naming the variables spares PromptBuilder a second parse of the template (half its build cost).
        self._builder = PromptBuilder(
            template=template, required_variables=["query"], variables=["query", *self.context]
        )

    @component.output_types(prompt=str)
    def run(self, query: str) -> dict[str, str]:
        prompt: str = self._builder.run(query=query, **self.context)["prompt"]
        return {"prompt": prompt}
