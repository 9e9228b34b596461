"""The prompt builder every pipeline starts with: Haystack's `PromptBuilder`, with templates kept as files.

The query and the context (earlier turns, retrieved documents) are run-time inputs of the builder,
template variables, never part of the template: `{{ 7*7 }}` in a question, in an earlier answer or
in a document reaches the model literally.

Each request gets its own builder in its own pipeline, but compiling a template with Jinja costs CPU
on the event loop, per request, for a text that never changes (docs/performance.md, "Each prompt
template compiled once"). `SharedTemplatePromptBuilder`
is Haystack's `PromptBuilder` (its inputs, its rendering, its `run`) whose compiled template is
compiled once per template text and shared: a compiled Jinja template is immutable and renders with
a fresh context each call, from any thread.

It also renders on the event loop (`run_async`): `AsyncPipeline` runs a component without one on a
pool thread, and rendering a compiled template (tens of microseconds) costs less than the two
thread hand-offs, which under load wait for the GIL behind every running stream.
"""

import functools
from pathlib import Path
from typing import Any

from haystack import component
from haystack.components.builders import PromptBuilder

TEMPLATES = Path(__file__).parent / "templates"


def load_template(name: str) -> str:
    return (TEMPLATES / name).read_text(encoding="utf-8")


@component
class SharedTemplatePromptBuilder(PromptBuilder):
    def __init__(self, template: str, required_variables: list[str], variables: list[str]) -> None:
        # The variables are named, so the template's text is not needed to find them; an empty one
        # compiles quickly. Then the shared compilation, made by Haystack's own constructor, is put in.
        # (`@component` rebuilds the class, so a zero-argument `super()` would not find it.)
        PromptBuilder.__init__(self, template="", required_variables=required_variables, variables=variables)
        compiled = _compiled(template)
        self._template_string = template
        self._env = compiled._env
        self.template = compiled.template

    @component.output_types(prompt=str)
    async def run_async(
        self, template: str | None = None, template_variables: dict[str, Any] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        return self.run(template=template, template_variables=template_variables, **kwargs)


@functools.lru_cache(maxsize=32)
def _compiled(template: str) -> PromptBuilder:
    return PromptBuilder(template=template, required_variables=[], variables=[])


def prompt_builder(template: str, context: tuple[str, ...] = ()) -> PromptBuilder:
    """`query` is required; each context variable is optional (an empty string when not given)."""
    return SharedTemplatePromptBuilder(template, required_variables=["query"], variables=["query", *context])
