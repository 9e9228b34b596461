"""Serving: admit, start, find, read and stop runs, from plain arguments.

The HTTP edge (`service/http/`) parses a request, calls one of these, and chooses a response for
what comes back (`service/asks.py`): a `Reader` of a run's events (SSE), a run to answer as one
JSON object, or a domain error (`service/errors.py`) that the edge maps to a status code in one
place (`service/http/errors.py`). Nothing here knows HTTP; what two routes share lives here.
A run lives in the store (`service/store/`): this process's, or one another process owns.
"""

from dataclasses import dataclass, field
from functools import partial
from typing import Any

from service.answering.answers import Context, available, check_pipeline, prepare
from service.asks import Answering, Ask, EncoderFor, Reader, named_events
from service.errors import (
    CapacityExceeded,
    ConversationNotFound,
    InvalidRequest,
    RunExpired,
    RunNotFound,
    ShuttingDown,
    StoreUnavailable,
    UnknownModel,
    classify,
)
from service.ops.logs import current_run_id
from service.ops.metrics import ServiceMetrics
from service.ops.tracing import RunOutcome, RunTrace, Tracing
from service.settings import Settings
from service.store.base import RunHandle, RunStore
from service.streaming.collector import ChunkCollector
from service.streaming.event_log import EventLog
from service.streaming.held_run import HeldRun
from service.streaming.run import Admission, Run
from service.streaming.sse import EVENTS
from service.streaming.threads import WorkerThreads

DEMO_NOTICE = "Answers come from the built-in demo model, not a real LLM."
MODEL_PREFIX = "haystream-"  # /v1/models names each pipeline as a model: haystream-chat, haystream-documents


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

    def models(self) -> list[str]:
        """The pipelines, named as /v1/models lists them."""
        return [MODEL_PREFIX + name for name in available(self.answers)]

    def pipeline_for(self, model: str) -> str:
        if model not in self.models():
            raise UnknownModel(model)
        return model.removeprefix(MODEL_PREFIX)

    async def answer(self, ask: Ask) -> Answering:
        """Start a run that one client reads whole (not held, so nothing to resume or attach to)."""
        run, collector = await self._admit(ask)
        return Answering(run.id, collector.events(), partial(run.close, collector))

    async def stream(
        self, ask: Ask, *, idempotency_key: str | None, grace: float, encoder: EncoderFor = named_events
    ) -> Reader | None:
        """Start a held run with its first reader attached (so its grace does not start), or attach to
        the run the Idempotency-Key is bound to."""
        held = await self._hold(ask, idempotency_key, grace, encoder)
        if not isinstance(held, HeldRun):
            _check_wire(held, encoder(held.id).wire, "idempotency-key")
            return await self.read(held, None)
        reader = await self.read(held, None)
        held.start()
        assert reader is not None  # a run just started has every event still to come
        return reader

    async def start(self, ask: Ask, *, idempotency_key: str | None) -> tuple[RunHandle, bool]:
        """The Idempotency-Key's run if there is one (False), else a new held run, started (True)."""
        if idempotency_key is not None and (found := await self.find(ask, idempotency_key)) is not None:
            return found, False
        held = await self._hold(ask, idempotency_key, self.settings.resume_grace, named_events)
        if not isinstance(held, HeldRun):
            return held, False
        held.start()
        await self.runs.started(held)  # its Location must work on every process at once
        return held, True

    async def find(self, ask: Ask, idempotency_key: str, wire: str = EVENTS.wire) -> RunHandle | None:
        found = await self.runs.find(ask.owner, idempotency_key)
        if found is not None:
            _check_wire(found, wire, "idempotency-key")
        return found

    async def resume(self, ask: Ask, last_event_id: str, wire: str = EVENTS.wire) -> Reader | None:
        """Read the caller's run that `last_event_id` belongs to, after that event."""
        found = await self.runs.get(last_event_id.rpartition(":")[0])
        if found is None or found.owner != ask.owner:
            raise RunExpired
        _check_wire(found, wire, "last-event-id")
        return await self.read(found, last_event_id)

    async def get(self, run_id: str) -> RunHandle:
        found = await self.runs.get(run_id)
        if found is None:
            raise RunNotFound
        return found

    async def stop(self, run_id: str) -> None:
        """DELETE: stop a running run (kept for the retention, so a reader learns it was cancelled);
        forget one of this process's that has ended, however it ended, with its Idempotency-Key."""
        found = await self.get(run_id)
        if isinstance(found, HeldRun) and found.ended:
            self.runs.local.evict(run_id)
        else:
            await found.request_stop()

    async def conversation(self, conversation_id: str) -> list[dict[str, Any]]:
        messages = await self.answers.conversations.messages(conversation_id)
        if messages is None:
            raise ConversationNotFound
        return messages

    async def forget_conversation(self, conversation_id: str) -> None:
        if not await self.answers.conversations.delete(conversation_id):
            raise ConversationNotFound

    async def read(self, found: RunHandle, last_event_id: str | None) -> Reader | None:
        """A reader of a run's events after `last_event_id` (all when None); None: nothing more will come."""
        resumed = not isinstance(found, HeldRun) or found.writer is not None  # not a new run's first reader
        frames = await found.open_reader(last_event_id)
        if frames is None:
            return None
        current_run_id.set(found.id)
        if not isinstance(found, HeldRun):
            return Reader(found.id, frames.frames, frames.on_close)
        end_read = found.run.trace.read(found.id) if resumed else None

        def on_close() -> None:
            frames.on_close()
            if end_read is not None:
                end_read()

        log, collector = found.log, found.collector
        return Reader(
            found.id,
            frames.frames,
            on_close,
            opened=lambda: log.next_seq > 1 or log.closed,
            failed_early=lambda: collector.error if collector.chunks == 0 else None,
        )

    async def _hold(
        self, ask: Ask, idempotency_key: str | None, grace: float, encoder: EncoderFor
    ) -> HeldRun | RunHandle:
        """A new held run, not started; or, when the Idempotency-Key is taken, the run it is bound to."""
        if not self.draining:  # (_admit refuses a draining service)
            self.runs.make_room()
        if idempotency_key is not None:
            return await self._hold_once(ask, idempotency_key, grace, encoder)
        run, collector = await self._admit(ask)
        return await self._put(self._held_run(run, collector, ask, None, grace, encoder), None)

    async def _hold_once(self, ask: Ask, key: str, grace: float, encoder: EncoderFor) -> HeldRun | RunHandle:
        """The key is claimed before the run is prepared: one generation per key, on every process."""
        run = self._slot()
        try:
            existing = await self.runs.claim(ask.owner, key, run.id)
        except BaseException:
            self.admission.release(run)
            raise
        if existing is not None:
            self.admission.release(run)
            return existing
        try:
            collector = await self._prepare(run, ask)
        except BaseException:
            await self.runs.unclaim(ask.owner, key, run.id)
            raise
        return await self._put(self._held_run(run, collector, ask, key, grace, encoder), key)

    async def _put(self, held: HeldRun, key: str | None) -> HeldRun:
        try:
            await self.runs.put(held)
        except (CapacityExceeded, StoreUnavailable):  # the store filled up (or went) while this run was prepared
            held.run.cancel()
            if key is not None:
                await self.runs.unclaim(held.owner, key, held.id)
            raise
        return held

    def _held_run(
        self,
        run: Run,
        collector: ChunkCollector,
        ask: Ask,
        idempotency_key: str | None,
        grace: float,
        encoder: EncoderFor,
    ) -> HeldRun:
        settings = self.settings
        log = EventLog(
            run.id,
            max_events=settings.replay_max_events,
            max_bytes=settings.replay_max_bytes,
            window=settings.queue_size,
            encoder=encoder(run.id),
        )
        owner = ask.owner
        return HeldRun(
            run, collector, log, owner=owner, idempotency_key=idempotency_key, grace=grace, on_end=self.runs.ended
        )

    def _slot(self) -> Run:
        if self.draining:
            raise ShuttingDown
        run = self.admission.admit()
        current_run_id.set(run.id)
        return run

    async def _admit(self, ask: Ask) -> tuple[Run, ChunkCollector]:
        run = self._slot()
        return run, await self._prepare(run, ask)

    async def _prepare(self, run: Run, ask: Ask) -> ChunkCollector:
        """Build and start the run's pipeline; an admitted run that cannot start gives its slot back."""
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
        return ChunkCollector(
            run.queue,
            metadata=metadata,
            classify=classify,
            keepalive_interval=self.settings.keepalive_interval,
            on_finished=partial(answer.finished, run),
        )

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


def _check_wire(found: RunHandle, wire: str, header: str) -> None:
    """A run is read in the format it was started in (the service's events, or OpenAI's chunks); only
    a run this process holds knows its format, one read through another process is taken as it comes."""
    if isinstance(found, HeldRun) and found.log.encoder.wire != wire:
        raise InvalidRequest(header, "belongs to a run started on another endpoint")
