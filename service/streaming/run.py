"""A run's life: admission, its id, the pipeline task, cancellation, and the admission that owns it.

A run holds its admission slot until its producer task has really finished, not merely until
its client left: the slot stands for a pool thread, and a cancelled run's thread is only free
once the generator has unwound. Admitting against threads that are still busy would queue the
next stream silently behind them, which is exactly what the 503 is there to prevent.
"""

import asyncio
import logging
import secrets
from collections.abc import Callable
from typing import Any

from haystack import AsyncPipeline

from service.errors import (
    CapacityExceeded,
    ErrorType,
    Refusal,
    RunCancelled,
    RunError,
    RunTooLong,
    UpstreamIncomplete,
    chain,
    classify,
)
from service.ops.gc_policy import IdleGC
from service.ops.logs import failure_fields
from service.ops.loop_lag import Lag
from service.ops.metrics import ServiceMetrics
from service.ops.tracing import NO_TRACE, RunOutcome, RunTrace
from service.streaming.bridge import StreamBridge
from service.streaming.collector import ChunkCollector, Failed, Finished, QueueItem
from service.upstream.pool import RunTransport, UpstreamPool

logger = logging.getLogger("service.streaming.run")

PipelineFactory = Callable[[StreamBridge, RunTransport], AsyncPipeline]

# Why a run that did not end by itself was stopped: its outcome, in the `run ended` log line and the metrics.
CLIENT_GONE = "client_gone"  # its client left (or, for a held run, nobody came back within the grace)
CANCELLED = "cancelled"  # stopped on purpose: DELETE /runs/{id}
TIMED_OUT = f"error:{ErrorType.RUN_TIMEOUT}"  # past HAYSTREAM_RUN_MAX_DURATION


class Run:
    """`max_duration`: past it the run fails with `run_timeout` (`RunTooLong`), whoever reads it, and
    `on_timeout` is called (a held run ends its log there, even if nobody is reading it)."""

    def __init__(self, admission: "Admission", queue_size: int, max_duration: float | None = None) -> None:
        self.id = "run_" + secrets.token_urlsafe(16)
        self.admission = admission
        # One batch in the queue and one in the bridge: at most 2 x queue_size chunks per stream.
        self.queue: asyncio.Queue[QueueItem] = asyncio.Queue(maxsize=1)
        self.transport = admission.upstream.transport_for_run()
        self.bridge = StreamBridge(
            asyncio.get_running_loop(), self.queue, max_pending=queue_size, on_refuse=self.transport.close_response
        )
        self.started = asyncio.get_running_loop().time()
        self.task: asyncio.Task[None] | None = None
        self.outcome = "running"
        self.stopped_by: str | None = None  # why it was stopped, when it was: CLIENT_GONE, CANCELLED, error:<type>
        self.failure: RunError | None = None  # what `fail` ended it with, when that came first
        self.on_timeout: Callable[[], None] | None = None
        self.reply: str | None = None  # the whole answer, once the pipeline has returned one
        self._generating = True  # the pipeline (and its pool thread) is still at work
        self.trace: RunTrace = NO_TRACE  # its span, when tracing is on (service/ops/tracing.py)
        self._max_duration = max_duration
        self._deadline: asyncio.TimerHandle | None = None

    def start(self, factory: PipelineFactory, inputs: dict[str, Any]) -> None:
        """Build the run's pipeline and run it on `inputs`, the prompt builder's (the query and its context)."""
        pipeline = factory(self.bridge, self.transport)
        self.task = asyncio.get_running_loop().create_task(self._produce(pipeline, inputs), name=self.id)
        self.task.add_done_callback(lambda _: self.admission.release(self))
        if self._max_duration is not None:
            self._deadline = asyncio.get_running_loop().call_later(self._max_duration, self._too_long)
        logger.info("run started", extra={"run_id": self.id, "active": self.admission.active})

    async def _produce(self, pipeline: AsyncPipeline, inputs: dict[str, Any]) -> None:
        """Whatever happens, the queue ends with one `Finished` or `Failed`, unless nobody is reading."""
        try:
            outcome: Finished | Failed = await self._generate(pipeline, inputs)
        except Exception as error:
            if self.bridge.cancelled or _caused_by(error, RunCancelled):
                return
            if not self.bridge.received and _caused_by(error, IndexError):
                # A 200 stream that ended before its first chunk: Haystack fails joining zero chunks.
                error = UpstreamIncomplete()
            logger.warning("run failed", extra={"run_id": self.id, **failure_fields(error)})
            outcome = Failed(error)
        # The thread is done: from here on, cancelling this task frees nothing before its time.
        self._generating = False
        if self.bridge.cancelled:  # nobody reads, or `fail` already ended the queue
            return
        await self.bridge.flush()  # the text that came before the end, or before the failure
        await self.queue.put(outcome)

    async def _generate(self, pipeline: AsyncPipeline, inputs: dict[str, Any]) -> Finished | Failed:
        result = await pipeline.run_async({"prompt_builder": inputs})
        meta: dict[str, Any] = result["llm"]["meta"][0] if result["llm"]["meta"] else {}
        self.reply = result["llm"]["replies"][0] if result["llm"]["replies"] else ""
        if meta.get("finish_reason") is None:  # the SDK ends quietly when a stream stops short
            return Failed(UpstreamIncomplete())
        return Finished(meta)

    def cancel(self, reason: str = CLIENT_GONE) -> None:
        """Stop paying for this run: refuse more chunks, cut the upstream response, stop the producer.

        `reason` becomes the outcome of a run that did not end by itself (the first reason given wins).
        While the pipeline runs, its task is left to end by itself (the thread unwinds at once), so the
        run keeps its slot until the thread is free; after that, the task is only handing over its last
        items, and is cancelled so it never waits on a queue nobody reads.
        """
        if self.stopped_by is None:
            self.stopped_by = reason
        self._stop_deadline()
        self.bridge.cancel()
        self.transport.abort()
        if not self._generating and self.task is not None:
            self.task.cancel()
        while not self.queue.empty():
            self.queue.get_nowait()

    def fail(self, error: Exception) -> None:
        """End the stream now with `error` as its `error` event, and stop the work behind it.

        It is also the run's outcome (`error:<type>`) if nothing stopped it before; a held run whose
        log is held up behind its readers ends with the same event (`HeldRun`)."""
        if self.stopped_by is None:
            self.failure = classify(error)
            self.stopped_by = f"error:{self.failure.type}"
        if self.task is not None and self.task.done():
            return  # the producer already ended the queue with its own outcome
        self.cancel()  # empties the queue, so the put below cannot find it full
        self.queue.put_nowait(Failed(error))

    def _too_long(self) -> None:
        self._deadline = None
        self.fail(RunTooLong())
        if self.on_timeout is not None:
            self.on_timeout()

    def _stop_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def close(self, collector: ChunkCollector) -> None:
        """The response is over, however it ended; a run whose stream did not end is cancelled."""
        self._stop_deadline()
        if collector.finished:
            self.outcome = "completed"
        elif collector.error is not None:
            self.outcome = f"error:{collector.error.type}"
        else:
            self.cancel()
            self.outcome = self.stopped_by or CLIENT_GONE
        duration = asyncio.get_running_loop().time() - self.started
        ttft = None if collector.first_chunk_at is None else collector.first_chunk_at - self.started
        logger.info(
            "run ended",
            extra={
                "run_id": self.id,
                "outcome": self.outcome,
                "chunks": collector.chunks,
                "ttft_ms": None if ttft is None else round(ttft * 1000, 1),
                "duration_ms": round(duration * 1000, 1),
            },
        )
        if self.admission.metrics is not None:
            self.admission.metrics.run_ended(self.outcome, collector.chunks, ttft, duration)
        self.trace.end(self._outcome(collector, ttft, duration))

    def _outcome(self, collector: ChunkCollector, ttft: float | None, duration: float) -> RunOutcome:
        """How the run ended, for its span."""
        end = collector.end or {}
        error = collector.error or self.failure
        return RunOutcome(
            self.outcome,
            collector.chunks,
            ttft,
            duration,
            finish_reason=end.get("finish_reason"),
            usage=end.get("usage"),
            error_type=None if error is None else str(error.type),
            reply=self.reply,
        )


def _caused_by(error: BaseException, kind: type[BaseException]) -> bool:
    return any(isinstance(link, kind) for link in chain(error))


class Admission:
    def __init__(
        self,
        max_streams: int,
        upstream: UpstreamPool,
        queue_size: int,
        metrics: ServiceMetrics | None = None,
        collector: IdleGC | None = None,
        max_duration: float | None = None,
        lag: Lag | None = None,
        max_lag: float = float("inf"),
    ) -> None:
        self.max_streams = max_streams
        self.max_duration = max_duration  # each run's (HAYSTREAM_RUN_MAX_DURATION); None: no limit
        self.upstream = upstream
        self.queue_size = queue_size
        self.metrics = metrics
        self.collector = collector  # told when runs start and when the last one ends
        self.lag = lag  # the event loop's measured lag, and the bound (seconds) past which new runs are refused
        self.max_lag = max_lag
        self.runs: dict[str, Run] = {}

    @property
    def active(self) -> int:
        return len(self.runs)

    def pressure(self) -> Refusal | None:
        """Why a new run would be refused now, if it would be: a few comparisons, no side effect."""
        if len(self.runs) >= self.max_streams:
            return Refusal.SLOTS
        if self.lag is not None and self.lag.seconds > self.max_lag:
            return Refusal.LOOP_LAG
        return None

    def check(self) -> None:
        """Raise `CapacityExceeded` (counted and logged) if a new run would be refused now."""
        reason = self.pressure()
        if reason is None:
            return
        lag_ms = None if self.lag is None else round(self.lag.seconds * 1000, 1)
        extra = {"reason": reason.value, "active": len(self.runs), "max_streams": self.max_streams, "lag_ms": lag_ms}
        logger.warning("run refused: at capacity", extra=extra)
        if self.metrics is not None:
            self.metrics.rejected(reason)
        raise CapacityExceeded(reason)

    def admit(self) -> Run:
        self.check()
        run = Run(self, self.queue_size, self.max_duration)
        self.runs[run.id] = run
        if self.collector is not None:
            self.collector.busy()
        return run

    def release(self, run: Run) -> None:
        self.runs.pop(run.id, None)
        if not self.runs and self.collector is not None:
            self.collector.idle()

    def cancel_all(self) -> None:
        for run in list(self.runs.values()):
            run.cancel()

    def fail_all(self, error: Exception) -> int:
        runs = list(self.runs.values())
        for run in runs:
            run.fail(error)
        return len(runs)

    async def wait_idle(self, grace: float) -> bool:
        tasks = [run.task for run in self.runs.values() if run.task is not None]
        if not tasks:
            return True
        _, pending = await asyncio.wait(tasks, timeout=grace)
        return not pending
