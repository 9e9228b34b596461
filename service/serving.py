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
    RunExpired,
    RunNotFound,
    ShuttingDown,
    StoreUnavailable,
    classify,
)
from service.ops.logs import current_run_id
from service.ops.metrics import ServiceMetrics
from service.settings import Settings
from service.store.base import RunHandle, RunStore
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

    async def stream(self, ask: Ask, *, idempotency_key: str | None, grace: float) -> Reader | None:
        """Start a held run with its first reader attached (so its grace does not start), or attach to
        the run the Idempotency-Key is bound to."""
        held = await self._hold(ask, idempotency_key, grace)
        if not isinstance(held, HeldRun):
            return await self.read(held, None)
        reader = await self.read(held, None)
        held.start()
        assert reader is not None  # a run just started has every event still to come
        return reader

    async def start(self, ask: Ask, *, idempotency_key: str | None) -> tuple[RunHandle, bool]:
        """The Idempotency-Key's run if there is one (False), else a new held run, started (True)."""
        if idempotency_key is not None and (found := await self.runs.find(ask.owner, idempotency_key)) is not None:
            return found, False
        held = await self._hold(ask, idempotency_key, self.settings.resume_grace)
        if not isinstance(held, HeldRun):
            return held, False
        held.start()
        await self.runs.started(held)  # its Location must work on every process at once
        return held, True

    async def find(self, ask: Ask, idempotency_key: str) -> RunHandle | None:
        return await self.runs.find(ask.owner, idempotency_key)

    async def resume(self, ask: Ask, last_event_id: str) -> Reader | None:
        """Read the caller's run that `last_event_id` belongs to, after that event."""
        held = await self.runs.get(last_event_id.rpartition(":")[0])
        if held is None or held.owner != ask.owner:
            raise RunExpired
        return await self.read(held, last_event_id)

    async def get(self, run_id: str) -> RunHandle:
        held = await self.runs.get(run_id)
        if held is None:
            raise RunNotFound
        return held

    async def stop(self, run_id: str) -> None:
        await (await self.get(run_id)).request_stop()

    def conversation(self, conversation_id: str) -> list[dict[str, Any]]:
        messages = self.answers.conversations.messages(conversation_id)
        if messages is None:
            raise ConversationNotFound
        return messages

    def forget_conversation(self, conversation_id: str) -> None:
        if not self.answers.conversations.delete(conversation_id):
            raise ConversationNotFound

    async def read(self, held: RunHandle, last_event_id: str | None) -> Reader | None:
        """A reader of `held`'s events after `last_event_id` (all when None); None: nothing more will come."""
        frames = await held.open_reader(last_event_id)
        if frames is None:
            return None
        current_run_id.set(held.id)
        return Reader(held.id, frames.frames, frames.on_close)

    async def _hold(self, ask: Ask, idempotency_key: str | None, grace: float) -> HeldRun | RunHandle:
        """A new held run, not started; or, when the Idempotency-Key is taken, the run it is bound to."""
        if self.draining:
            raise ShuttingDown
        self.runs.make_room()
        run = self.admission.admit()
        current_run_id.set(run.id)
        try:
            if idempotency_key is not None:
                existing = await self.runs.claim(ask.owner, idempotency_key, run.id)
                if existing is not None:
                    self.admission.release(run)
                    return existing
            collector = await self._prepare(run, ask)
        except BaseException:
            self.admission.release(run)
            if idempotency_key is not None:
                await self.runs.unclaim(ask.owner, idempotency_key, run.id)
            raise
        held = self._held_run(run, collector, ask, idempotency_key, grace)
        try:
            await self.runs.put(held)
        except (CapacityExceeded, StoreUnavailable):  # the store filled up (or went) while this run was prepared
            run.cancel()
            if idempotency_key is not None:
                await self.runs.unclaim(ask.owner, idempotency_key, run.id)
            raise
        return held

    def _held_run(
        self, run: Run, collector: ChunkCollector, ask: Ask, idempotency_key: str | None, grace: float
    ) -> HeldRun:
        settings = self.settings
        log = EventLog(
            run.id,
            max_events=settings.replay_max_events,
            max_bytes=settings.replay_max_bytes,
            window=settings.queue_size,
        )
        return HeldRun(
            run,
            collector,
            log,
            owner=ask.owner,
            idempotency_key=idempotency_key,
            grace=grace,
            max_duration=settings.run_max_duration,
            on_end=self.runs.ended,
        )

    async def _admit(self, ask: Ask) -> tuple[Run, ChunkCollector]:
        if self.draining:
            raise ShuttingDown
        run = self.admission.admit()
        current_run_id.set(run.id)
        try:
            return run, await self._prepare(run, ask)
        except BaseException:
            self.admission.release(run)
            raise

    async def _prepare(self, run: Run, ask: Ask) -> ChunkCollector:
        answer = await prepare(self.answers, ask.api_key, ask.query, ask.pipeline, ask.conversation_id)
        run.start(answer.factory, answer.inputs)
        metadata: dict[str, Any] = {"run_id": run.id, "model": self.settings.model} | answer.metadata
        if self.settings.demo:
            metadata.update(demo=True, notice=DEMO_NOTICE)
        return ChunkCollector(
            run.queue,
            metadata=metadata,
            classify=classify,
            keepalive_interval=self.settings.keepalive_interval,
            on_finished=partial(answer.finished, run),
        )
