"""Serving: admit, start, find, read and stop runs, from plain arguments.

The HTTP edge (`service/http/`) parses a request, calls one of these, and chooses a response for
what comes back: a `Reader` of a run's events (SSE), a run to answer as one JSON object, or a
domain error (`service/errors.py`) that the edge maps to a status code in one place
(`service/http/errors.py`). Nothing here knows HTTP; what two routes share lives here.
"""

import hashlib
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from service.answering.answers import Context, available, check_pipeline, prepare
from service.errors import (
    CapacityExceeded,
    ConversationNotFound,
    InvalidRequest,
    ReplayUnavailable,
    RunError,
    RunExpired,
    RunNotFound,
    ShuttingDown,
    UnknownModel,
    classify,
)
from service.ops.logs import current_run_id
from service.ops.metrics import ServiceMetrics
from service.ops.tracing import RunOutcome, RunTrace, Tracing
from service.settings import Settings
from service.store.runs import RunStore
from service.streaming.collector import ChunkCollector, StreamItem
from service.streaming.event_log import EventLog
from service.streaming.held_run import HeldRun
from service.streaming.run import Admission, Run
from service.streaming.sse import EVENTS, Encoder
from service.streaming.threads import WorkerThreads

DEMO_NOTICE = "Answers come from the built-in demo model, not a real LLM."
MODEL_PREFIX = "haystream-"  # /v1/models names each pipeline as a model: haystream-chat, haystream-documents

# A run's wire format, given its id (OpenAI's chunks carry a completion id made from it).
EncoderFor = Callable[[str], Encoder]


def named_events(_: str) -> Encoder:
    return EVENTS


@dataclass(frozen=True)
class Ask:
    """One question, as every route that starts a run receives it once parsed."""

    api_key: str
    query: str
    pipeline: str = "chat"
    conversation_id: str | None = None
    # The turns before the query, when the client sends them (/v1/chat/completions) instead of a conversation id.
    history: tuple[Mapping[str, str], ...] | None = None
    # Per-request generation options (temperature, max_completion_tokens, user, ...) over the settings' own.
    generation: Mapping[str, object] | None = None

    @property
    def owner(self) -> bytes:
        return owner_of(self.api_key)


def _nothing_yet() -> RunError | None:
    return None


def _already() -> bool:
    return True


@dataclass(frozen=True)
class Reader:
    """A reader attached to a held run: its SSE frames, and what to call once the response is over.

    `opened` says whether the run has logged more than its `metadata` (or has ended), and
    `failed_early` gives the run's error if it failed before its first text: a response that has
    not started yet can then answer with an HTTP status instead (/v1/chat/completions does)."""

    run_id: str
    frames: AsyncGenerator[bytes, None]
    on_close: Callable[[], None]
    opened: Callable[[], bool] = _already
    failed_early: Callable[[], RunError | None] = _nothing_yet


@dataclass(frozen=True)
class Answering:
    """A run read whole by one client (a JSON answer): its events, and what to call when done."""

    run_id: str
    events: AsyncGenerator[StreamItem, None]
    on_close: Callable[[], None]


def owner_of(api_key: str) -> bytes:
    """Who may attach by Idempotency-Key or resume a POST /chat: a hash of the key, never the key."""
    return hashlib.sha256(api_key.encode()).digest()


@dataclass
class Serving:
    """Built by the app's lifespan; lives as long as the app."""

    settings: Settings
    admission: Admission
    threads: WorkerThreads
    answers: Context  # conversations, documents and the guard: what pipelines are built from
    runs: RunStore
    metrics: ServiceMetrics
    draining: bool = False  # set by the shutdown drain (service/ops/shutdown.py): no new runs, readyz 503
    tracing: Tracing = field(default_factory=Tracing)  # off unless the OTEL_* environment turns it on

    def refuse_if_full(self) -> None:
        """Raise `CapacityExceeded` if a new run would be refused now: the edge asks this before any
        per-request work (service/http/middleware/capacity.py); `_admit` asks again."""
        if not self.draining:  # (a draining service refuses in `_admit`, with its own error)
            self.admission.check()

    def check(self, ask: Ask) -> None:
        """What every route that starts a run checks beyond the schema."""
        if len(ask.query) > self.settings.max_query_chars:
            raise InvalidRequest("query", f"must be at most {self.settings.max_query_chars} characters")
        check_pipeline(self.answers, ask.pipeline)

    async def answer(self, ask: Ask) -> Answering:
        """Start a run that one client reads whole (not held, so nothing to resume or attach to)."""
        run, collector = await self._admit(ask)
        return Answering(run.id, collector.events(), partial(run.close, collector))

    def models(self) -> list[str]:
        """The pipelines, named as /v1/models lists them."""
        return [MODEL_PREFIX + name for name in available(self.answers)]

    def pipeline_for(self, model: str) -> str:
        if model not in self.models():
            raise UnknownModel(model)
        return model.removeprefix(MODEL_PREFIX)

    async def stream(
        self, ask: Ask, *, idempotency_key: str | None, grace: float, encoder: EncoderFor = named_events
    ) -> Reader:
        """Start a held run with its first reader attached (so its grace does not start)."""
        held = await self._hold(ask, idempotency_key, grace, encoder)
        reader = self.read(held, None)
        held.start()
        assert reader is not None  # a run just started has every event still to come
        return reader

    async def start(self, ask: Ask, *, idempotency_key: str | None) -> tuple[HeldRun, bool]:
        """The Idempotency-Key's run if there is one (False), else a new held run, started (True)."""
        if idempotency_key is not None and (held := self.find(ask, idempotency_key)) is not None:
            return held, False
        held = await self._hold(ask, idempotency_key, self.settings.resume_grace, named_events)
        held.start()
        return held, True

    def find(self, ask: Ask, idempotency_key: str, wire: str = EVENTS.wire) -> HeldRun | None:
        held = self.runs.find(ask.owner, idempotency_key)
        if held is not None and held.log.encoder.wire != wire:
            raise InvalidRequest("idempotency-key", "was used for a run started on another endpoint")
        return held

    def resume(self, ask: Ask, last_event_id: str, wire: str = EVENTS.wire) -> Reader | None:
        """Read the caller's run that `last_event_id` belongs to, after that event."""
        held = self.runs.get(last_event_id.rpartition(":")[0])
        if held is None or held.owner != ask.owner:
            raise RunExpired
        if held.log.encoder.wire != wire:
            raise InvalidRequest("last-event-id", "belongs to a run started on another endpoint")
        return self.read(held, last_event_id)

    def get(self, run_id: str) -> HeldRun:
        held = self.runs.get(run_id)
        if held is None:
            raise RunNotFound
        return held

    def stop(self, run_id: str) -> None:
        """DELETE: stop a running run (kept for the retention, so a reader learns it was cancelled);
        forget one that has ended, however it ended, with its Idempotency-Key."""
        held = self.get(run_id)
        if held.ended:
            self.runs.evict(run_id)
        else:
            held.stop()

    def conversation(self, conversation_id: str) -> list[dict[str, Any]]:
        messages = self.answers.conversations.messages(conversation_id)
        if messages is None:
            raise ConversationNotFound
        return messages

    def forget_conversation(self, conversation_id: str) -> None:
        if not self.answers.conversations.delete(conversation_id):
            raise ConversationNotFound

    def read(self, held: HeldRun, last_event_id: str | None) -> Reader | None:
        """A reader of `held`'s events after `last_event_id` (all when None); None: nothing more will come."""
        log = held.log
        try:
            position = log.parse_id(last_event_id)
        except ValueError:
            raise InvalidRequest("last-event-id", "is not an event id of this run") from None
        if position < log.first_held():
            raise ReplayUnavailable
        if log.closed and position >= log.next_seq:
            return None
        current_run_id.set(held.id)
        resumed = held.writer is not None  # not the reader a new run starts with
        end_read = held.run.trace.read(held.id) if resumed else None
        held.attach()
        collector = held.collector

        def on_close() -> None:
            held.detach()
            if end_read is not None:
                end_read()

        return Reader(
            held.id,
            log.frames(position),
            on_close,
            opened=lambda: log.next_seq > 1 or log.closed,
            failed_early=lambda: collector.error if collector.chunks == 0 else None,
        )

    async def _hold(self, ask: Ask, idempotency_key: str | None, grace: float, encoder: EncoderFor) -> HeldRun:
        if not self.draining:  # (_admit refuses a draining service)
            self.runs.make_room()
        run, collector = await self._admit(ask)
        settings = self.settings
        log = EventLog(
            run.id,
            max_events=settings.replay_max_events,
            max_bytes=settings.replay_max_bytes,
            window=settings.queue_size,
            encoder=encoder(run.id),
        )
        held = HeldRun(
            run,
            collector,
            log,
            owner=ask.owner,
            idempotency_key=idempotency_key,
            grace=grace,
            on_end=self.runs.ended,
        )
        try:
            self.runs.put(held)
        except CapacityExceeded:  # the store filled up with running runs while this one was being prepared
            run.cancel()
            raise
        return held

    async def _admit(self, ask: Ask) -> tuple[Run, ChunkCollector]:
        if self.draining:
            raise ShuttingDown
        run = self.admission.admit()
        current_run_id.set(run.id)
        run.trace = self._trace(run, ask)
        try:
            with run.trace.current():  # the run's span is the parent of Haystack's
                answer = await prepare(
                    self.answers,
                    ask.api_key,
                    ask.query,
                    ask.pipeline,
                    ask.conversation_id,
                    history=ask.history,
                    generation=ask.generation,
                )
                run.start(answer.factory, answer.inputs)
        except BaseException:
            self.admission.release(run)
            run.trace.end(RunOutcome("not_started", 0, None, 0.0, error_type="not_started"))
            raise
        metadata: dict[str, Any] = {"run_id": run.id, "model": self.settings.model} | answer.metadata
        if self.settings.demo:
            metadata.update(demo=True, notice=DEMO_NOTICE)
        collector = ChunkCollector(
            run.queue,
            metadata=metadata,
            classify=classify,
            keepalive_interval=self.settings.keepalive_interval,
            on_finished=partial(answer.finished, run),
        )
        return run, collector

    def _trace(self, run: Run, ask: Ask) -> RunTrace:
        settings = self.settings
        options = settings.generation_kwargs() | dict(ask.generation or {})
        return self.tracing.start_run(
            run.id,
            model=settings.model,
            pipeline=ask.pipeline,
            base_url=settings.base_url,
            query=ask.query,
            temperature=options.get("temperature"),
            max_tokens=options.get("max_completion_tokens"),
        )
