"""Warm what the first request would otherwise pay for, before the service says it is ready.

On a fresh process the first answer waited much longer for its first token than the ones after it
(docs/performance.md, "The first request after a start"), nearly all of it on the pool thread of
the first run: the OpenAI SDK imports `openai.resources` (every API's models, a few
hundred pydantic classes) the first time a client's `.chat` is touched, pydantic builds the
validators of the chunk models on the first parse, Jinja compiles each template the first time a
prompt builder is made for it, and Haystack's pipeline run has lazy imports of its own.

So the lifespan runs every pipeline the service can answer with once, whole, before `/readyz`
says ready: each built exactly as a request builds it, then run against a canned upstream answer
served in process (`httpx.MockTransport`). Nothing goes out on the network and no key is used
(the placeholder below never leaves the process), so the warm-up needs no upstream and cannot
fail because of one; it is no run either (no slot, no metric, no log of a run). What it cannot
warm is the upstream's own connection, which needs the upstream: only the TLS context it will use
is made here (`UpstreamPool.prepare_tls`).
"""

import asyncio
import json
import logging
import time
from typing import Any

import httpx
from haystack import AsyncPipeline
from haystack.dataclasses import StreamingChunk

from pipelines.chat import build_chat_pipeline
from pipelines.documents import build_documents_pipeline, retrieve
from pipelines.refusal import build_refusal_pipeline
from service.answering.answers import Context, upstream_options

logger = logging.getLogger("service.answering.warmup")

PLACEHOLDER_KEY = "sk-warm-up-not-a-key"
QUERY = "warm-up"
# A bound on the whole warm-up: past it the service starts anyway (and says so), merely colder.
WARMUP_TIMEOUT = 30.0


async def warm_up(context: Context) -> None:
    """Run each available pipeline once against the canned answer; a failure is logged, never raised."""
    started = time.perf_counter()
    try:
        await asyncio.wait_for(_run_each(context), WARMUP_TIMEOUT)
    except Exception as error:  # a colder first request is better than no service
        logger.warning("warm-up failed; the first requests may be slower", extra={"error": type(error).__name__})
        return
    logger.info("warmed up", extra={"duration_ms": round((time.perf_counter() - started) * 1000, 1)})


async def _run_each(context: Context) -> None:
    options = upstream_options(context.settings, PLACEHOLDER_KEY)
    received: list[StreamingChunk] = []
    options["transport"] = httpx.MockTransport(_canned)
    options["max_retries"] = 0  # nothing to retry against
    options["streaming_callback"] = received.append
    inputs: dict[str, Any] = {"query": QUERY, "history": [{"role": "user", "content": QUERY}]}
    pipelines = [
        (build_chat_pipeline(**options), inputs),
        (build_refusal_pipeline(context.settings.guard_message, received.append), {"query": QUERY}),
    ]
    if context.documents is not None:
        loop = asyncio.get_running_loop()
        found = await loop.run_in_executor(None, retrieve, context.documents, QUERY, context.settings.documents_top_k)
        pipeline = build_documents_pipeline(**options)
        pipelines.append((pipeline, inputs | {"documents": found}))
    for pipeline, pipeline_inputs in pipelines:
        await _run(pipeline, pipeline_inputs)
    if not received:
        raise RuntimeError("the warm-up's pipelines streamed nothing")


async def _run(pipeline: AsyncPipeline, inputs: dict[str, Any]) -> None:
    result = await pipeline.run_async({"prompt_builder": inputs})
    if not result["llm"]["meta"] or result["llm"]["meta"][0].get("finish_reason") is None:
        raise RuntimeError("a warm-up pipeline did not finish")


def _chunk(delta: dict[str, Any], finish_reason: str | None = None, usage: dict[str, int] | None = None) -> bytes:
    choices = [] if usage is not None else [{"index": 0, "delta": delta, "finish_reason": finish_reason}]
    chunk = {
        "id": "chatcmpl-warm-up",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "warm-up",
        "choices": choices,
        "usage": usage,
    }
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


_CANNED = b"".join(
    (
        _chunk({"role": "assistant", "content": ""}),
        _chunk({"content": "ok"}),
        _chunk({}, finish_reason="stop"),
        _chunk({}, usage={"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}),
        b"data: [DONE]\n\n",
    )
)


def _canned(request: httpx.Request) -> httpx.Response:
    """The upstream's side of the warm-up: a short, complete streamed answer, as an OpenAI server sends it."""
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=_CANNED)
