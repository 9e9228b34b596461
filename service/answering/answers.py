"""What answers a request: which pipeline, with which context (earlier turns, retrieved documents, or
the guard's refusal), what the `metadata` event says about it, and what is remembered once it ends.

Routes call `prepare` once the request is valid and admitted, hand `Answer.factory` to the run, and
call `Answer.finish` when the response is over.
"""

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from haystack import AsyncPipeline, Document
from haystack.document_stores.in_memory import InMemoryDocumentStore

from pipelines.chat import build_chat_pipeline
from pipelines.documents import build_documents_pipeline, retrieve
from pipelines.generator import UpstreamOptions
from pipelines.refusal import build_refusal_pipeline
from service.answering.conversations import Conversation, Conversations
from service.answering.guard import InputGuard
from service.errors import InvalidRequest, StoreUnavailable
from service.ops.logs import failure_fields
from service.settings import Settings
from service.streaming.bridge import StreamBridge
from service.streaming.run import PipelineFactory, Run
from service.upstream.pool import RunTransport

logger = logging.getLogger("service.answering")

PIPELINES = ("chat", "documents")


@dataclass
class Context:
    """What a request's pipeline is built from, besides the caller's key and the settings."""

    settings: Settings
    conversations: Conversations
    documents: InMemoryDocumentStore | None
    guard: InputGuard


@dataclass
class Answer:
    factory: PipelineFactory
    inputs: dict[str, Any]  # the prompt builder's: the query, and the context the template renders
    metadata: dict[str, Any] = field(default_factory=dict)
    query: str = ""
    conversation: Conversation | None = None
    conversations: Conversations | None = None

    async def finished(self, run: Run) -> None:
        """The run completed (its `end` is about to be sent): the whole turn joins its conversation.

        Awaited before `end` goes out, so a client that sends its follow-up on `end` finds the turn stored.
        A run that fails or is cancelled never gets here, so it leaves no half turn behind. A store that
        fails here costs the conversation this turn, not the client its complete answer: logged, `end` sent.
        """
        if not (self.conversation and self.conversations and run.reply is not None):
            return
        try:
            await self.conversations.record_turn(self.conversation.id, self.query, run.reply)
        except StoreUnavailable as error:
            logger.warning("turn not stored", extra=failure_fields(error))


def available(context: Context) -> list[str]:
    return [name for name in PIPELINES if name != "documents" or context.documents is not None]


def check_pipeline(context: Context, name: str) -> None:
    names = available(context)
    if name in names:
        return
    if name == "documents":
        raise InvalidRequest("pipeline", "'documents' is not available: the service has no HAYSTREAM_DOCUMENTS_DIR")
    raise InvalidRequest("pipeline", f"must be one of: {', '.join(names)}")


async def prepare(
    context: Context,
    api_key: str,
    query: str,
    pipeline: str,
    conversation_id: str | None,
    *,
    history: Sequence[Mapping[str, str]] | None = None,
    generation: Mapping[str, object] | None = None,
) -> Answer:
    """`history`, when given, is the turns before the query as the client sent them (/v1/chat/completions);
    else they come from the conversation `conversation_id` names. `generation` is per-request options."""
    settings = context.settings
    conversation = await context.conversations.open(conversation_id) if conversation_id is not None else None
    if history is None:
        history = conversation.history if conversation is not None else []
    metadata: dict[str, Any] = {}
    if conversation is not None:
        metadata.update(conversation_id=conversation.id, history_turns=conversation.turns)
    if context.guard.blocks(query):
        refusal = settings.guard_message
        return Answer(
            lambda bridge, _: build_refusal_pipeline(refusal, bridge),
            {"query": query},
            metadata | {"guarded": True},  # no conversation given: a refusal joins none
        )
    options = upstream_options(settings, api_key, generation or {})
    inputs: dict[str, Any] = {"query": query, "history": [dict(turn) for turn in history]}
    if pipeline == "documents":
        assert context.documents is not None  # check_pipeline refused the request otherwise
        found = await asyncio.get_running_loop().run_in_executor(
            None, retrieve, context.documents, query, settings.documents_top_k
        )
        metadata["sources"] = [_source(document) for document in found]
        inputs["documents"] = found
        factory = _factory(build_documents_pipeline, options)
    else:
        factory = _factory(build_chat_pipeline, options)
    return Answer(factory, inputs, metadata, query, conversation, context.conversations)


def upstream_options(
    settings: Settings, api_key: str, generation: Mapping[str, object] | None = None
) -> UpstreamOptions:
    """`generation`: the request's own options (/v1/chat/completions), over the settings' own."""
    return UpstreamOptions(
        api_key=api_key,
        model=settings.model,
        base_url=settings.base_url,
        timeout=settings.upstream_timeout,
        max_retries=settings.upstream_max_retries,
        generation_kwargs=settings.generation_kwargs() | dict(generation or {}),
        validate_chunks=settings.validate_chunks,
    )


def _factory(build: Callable[..., AsyncPipeline], options: UpstreamOptions) -> PipelineFactory:
    def factory(bridge: StreamBridge, transport: RunTransport) -> AsyncPipeline:
        return build(**options, streaming_callback=bridge, transport=transport)

    return factory


def _source(document: Document) -> dict[str, Any]:
    return {"file": document.meta.get("file_name"), "score": round(document.score or 0.0, 3)}
