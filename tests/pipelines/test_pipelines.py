"""The chat pipeline builder, on its own: no web layer involved."""

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import respx
from haystack import AsyncPipeline
from haystack.components.builders import PromptBuilder
from haystack.components.generators import OpenAIGenerator

from pipelines.chat import CHAT_TEMPLATE, build_chat_pipeline


def test_builds_prompt_builder_into_generator_with_the_given_key() -> None:
    pipeline = build_chat_pipeline(api_key="sk-one", model="m", base_url="http://upstream.test/v1")
    assert isinstance(pipeline, AsyncPipeline)
    assert isinstance(pipeline.get_component("prompt_builder"), PromptBuilder)  # the shape the product promises
    generator = pipeline.get_component("llm")
    assert type(generator) is OpenAIGenerator
    assert generator.client.api_key == "sk-one"
    assert str(generator.client.base_url) == "http://upstream.test/v1/"
    assert "sk-one" not in repr(generator.api_key)


def test_builders_share_one_compiled_template_and_render_as_haystacks_own() -> None:
    first, second = (build_chat_pipeline(api_key="k", model="m").get_component("prompt_builder") for _ in range(2))
    assert isinstance(first, PromptBuilder) and isinstance(second, PromptBuilder)
    assert first.template is second.template  # compiled once, not per request
    plain = PromptBuilder(template=CHAT_TEMPLATE, required_variables=["query"], variables=["query", "history"])
    history = [{"role": "user", "content": "{{ 7*7 }}"}, {"role": "assistant", "content": "49?"}]
    for inputs in ({"query": "q"}, {"query": "{% raw %}x", "history": history}):
        assert first.run(**inputs) == plain.run(**inputs)
    assert first.to_dict()["init_parameters"] == plain.to_dict()["init_parameters"]
    with pytest.raises(ValueError, match="query"):  # still required
        first.run(history=history)
    assert first.__haystack_supports_async__  # type: ignore[attr-defined]  # AsyncPipeline renders it on the loop


async def test_the_query_is_data_not_template() -> None:
    """A query is rendered as a variable: Jinja syntax in it reaches the model literally."""
    query = "{{ 7*7 }} {% for x in [1,2] %}{{ x }}{% endfor %} {{ config }}"
    with respx.mock(base_url="http://upstream.test/v1", using="httpx") as router:
        route = router.post("/chat/completions").mock(
            return_value=httpx.Response(
                200,
                json={
                    "id": "c",
                    "object": "chat.completion",
                    "created": 1,
                    "model": "m",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "ok"},
                            "finish_reason": "stop",
                        }
                    ],
                },
            )
        )
        pipeline = build_chat_pipeline(api_key="k", model="m", base_url="http://upstream.test/v1", max_retries=0)
        result = await pipeline.run_async({"prompt_builder": {"query": query}})
    assert result["llm"]["replies"] == ["ok"]
    messages = json.loads(route.calls.last.request.content)["messages"]
    assert messages == [{"role": "user", "content": query}]


@pytest.mark.parametrize(
    "entry",
    [
        "pipelines.chat",
        "service.app",
        "service.streaming.run",
        "service.streaming.collector",
        "service.http.routes.chat",
        "service.__main__",
    ],
)
def test_haystack_telemetry_is_off_unless_the_operator_turns_it_on(tmp_path: Path, entry: str) -> None:
    """Regression: service modules imported haystack before pipelines/ could turn telemetry off."""
    probe = f"import {entry}, haystack.telemetry._telemetry as t; print(t.telemetry is None)"
    env = {k: v for k, v in os.environ.items() if k != "HAYSTACK_TELEMETRY_ENABLED"} | {"HOME": str(tmp_path)}
    off = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert off.stdout.strip() == "True"
    on_env = env | {"HAYSTACK_TELEMETRY_ENABLED": "true"}
    on = subprocess.run([sys.executable, "-c", probe], env=on_env, capture_output=True, text=True, check=True)
    assert on.stdout.strip() == "False"


def test_importing_the_service_first_still_keeps_telemetry_off() -> None:
    """Regression: `service.app` imported haystack (via the run module) before `pipelines` could turn it off."""
    probe = "import service.app, haystack.telemetry._telemetry as t; print(t.telemetry is None)"
    env = {k: v for k, v in os.environ.items() if k != "HAYSTACK_TELEMETRY_ENABLED"}
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "True"
