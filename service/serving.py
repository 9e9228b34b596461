"""Serving: admit, start, find, read and stop runs, from plain arguments.

The HTTP edge (`service/http/`) parses a request, calls one of these, and chooses a response for
what comes back: a `Reader` of a run's events (SSE), a run to answer as one JSON object, or a
domain error (`service/errors.py`) that the edge maps to a status code in one place
(`service/http/errors.py`). Nothing here knows HTTP; what two routes share lives here.
"""

import hashlib
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from service.answering.answers import Context, check_pipeline, prepare
from service.errors import (
    CapacityExceeded,
    ConversationNotFound,
    InvalidRequest,
    ReplayUnavailable,
    RunExpired,
    RunNotFound,
    ShuttingDown,
    classify,
)
from service.ops.logs import current_run_id
from service.ops.metrics import ServiceMetrics
from service.settings import Settings
from service.store.runs import RunStore
from service.streaming.collector import ChunkCollector, StreamItem
from service.streaming.event_log import EventLog
from service.streaming.held_run import HeldRun
from service.streaming.run import Admission, Run
from service.streaming.threads import WorkerThreads

DEMO_NOTICE = "Answers come from the built-in demo model, not a real LLM."


@dataclass(frozen=True)
class Ask:
    """One question, as every route that starts a run receives it once parsed."""

    api_key: str
    query: str
    pipeline: str = "chat"
    conversation_id: str | None = None

    @property
    def owner(self) -> bytes:
        return owner_of(self.api_key)


@dataclass(frozen=True)
class Reader:
    """A reader attached to a held run: its SSE frames, and what to call once the response is over."""

    run_id: str
    frames: AsyncGenerator[bytes, None]
    on_close: Callable[[], None]


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

    def check(self, ask: Ask) -> None:
        """What every route that starts a run checks beyond the schema."""
        if len(ask.query) > self.settings.max_query_chars:
            raise InvalidRequest("query", f"must be at most {self.settings.max_query_chars} characters")
        check_pipeline(self.answers, ask.pipeline)

    async def answer(self, ask: Ask) -> Answering:
        """Start a run that one client reads whole (not held, so nothing to resume or attach to)."""
        run, collector = await self._admit(ask)
        return Answering(run.id, collector.events(), partial(run.close, collector))

    async def stream(self, ask: Ask, *, idempotency_key: str | None, grace: float) -> Reader:
        """Start a held run with its first reader attached (so its grace does not start)."""
        held = await self._hold(ask, idempotency_key, grace)
        reader = self.read(held, None)
        held.start()
        assert reader is not None  # a run just started has every event still to come
        return reader

    async def start(self, ask: Ask, *, idempotency_key: str | None) -> tuple[HeldRun, bool]:
        """The Idempotency-Key's run if there is one (False), else a new held run, started (True)."""
        if idempotency_key is not None and (held := self.runs.find(ask.owner, idempotency_key)) is not None:
            return held, False
        held = await self._hold(ask, idempotency_key, self.settings.resume_grace)
        held.start()
        return held, True

    def find(self, ask: Ask, idempotency_key: str) -> HeldRun | None:
        return self.runs.find(ask.owner, idempotency_key)

    def resume(self, ask: Ask, last_event_id: str) -> Reader | None:
        """Read the caller's run that `last_event_id` belongs to, after that event."""
        held = self.runs.get(last_event_id.rpartition(":")[0])
        if held is None or held.owner != ask.owner:
            raise RunExpired
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

    async def conversation(self, conversation_id: str) -> list[dict[str, Any]]:
        messages = await self.answers.conversations.messages(conversation_id)
        if messages is None:
            raise ConversationNotFound
        return messages

    async def forget_conversation(self, conversation_id: str) -> None:
        if not await self.answers.conversations.delete(conversation_id):
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
        held.attach()
        return Reader(held.id, log.frames(position), held.detach)

    async def _hold(self, ask: Ask, idempotency_key: str | None, grace: float) -> HeldRun:
        if not self.draining:  # (_admit refuses a draining service)
            self.runs.make_room()
        run, collector = await self._admit(ask)
        settings = self.settings
        log = EventLog(
            run.id,
            max_events=settings.replay_max_events,
            max_bytes=settings.replay_max_bytes,
            window=settings.queue_size,
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
        try:
            answer = await prepare(self.answers, ask.api_key, ask.query, ask.pipeline, ask.conversation_id)
            run.start(answer.factory, answer.inputs)
        except BaseException:
            self.admission.release(run)
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
