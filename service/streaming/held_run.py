"""`HeldRun`: a run that outlives its HTTP connections for a while, so a client can come back to it.

The run's `ChunkCollector` runs as a task of its own (one per run), writing every event into the
run's `EventLog` (`service/streaming/event_log.py`); each HTTP response is a reader of that log. Readers come
and go: when the last one leaves, a grace timer starts, and if nobody attaches before it fires
the run is cancelled exactly as a disconnect cancels it (`Run.close`: no more chunks, the upstream
socket shut down, the thread freed) and forgotten. A run also has a lifetime (`Run`'s maximum
duration): past it the log ends with a `run_timeout` error event, even when the answer is complete
but held up behind readers that do not read. `stop()` (DELETE /runs/{id}) ends it at once with a
`cancelled` error event. Whatever ends it, the log's last frame is `end` or `error`, and the run's
outcome (`Run.stopped_by`) says the same as that frame.

With a shared store, readers may also be attached through other processes: `elsewhere` (set by
the store) says until when (wall-clock seconds) one of them counts as present, and the grace
counts from the latest of those too.
"""

import asyncio
import json
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass

from service.errors import InvalidRequest, ReplayUnavailable, StoreUnavailable
from service.streaming.collector import ChunkCollector, error_data
from service.streaming.event_log import EventLog
from service.streaming.run import CANCELLED, CLIENT_GONE, TIMED_OUT, Run
from service.streaming.sse import Event

_STOPPED = {"type": "cancelled", "message": "The run was stopped.", "retryable": False}
_ABANDONED = {"type": "cancelled", "message": "The run was cancelled: nobody was reading it.", "retryable": False}


@dataclass(frozen=True)
class Frames:
    """A reader's SSE frames, and what to call once its response is over."""

    frames: AsyncGenerator[bytes, None]
    on_close: Callable[[], None]


class HeldRun:
    def __init__(
        self,
        run: Run,
        collector: ChunkCollector,
        log: EventLog,
        *,
        owner: bytes,
        idempotency_key: str | None,
        grace: float,
        on_end: Callable[["HeldRun"], None],
    ) -> None:
        self.run = run
        self.id = run.id
        self.collector = collector
        self.log = log
        self.owner = owner
        self.idempotency_key = idempotency_key
        self.readers = 0
        self.abandoned = False  # cancelled because nobody came back: not resumable
        self._grace = grace
        self._on_end = on_end
        self._grace_timer: asyncio.TimerHandle | None = None
        self.writer: asyncio.Task[None] | None = None
        run.on_timeout = self._too_long
        self.elsewhere: Callable[[], Awaitable[float]] | None = None
        self._checking: asyncio.Task[None] | None = None

    @property
    def ended(self) -> bool:
        return self.log.closed

    def start(self) -> None:
        """Start writing the run's events into its log; the grace runs until a reader attaches."""
        loop = asyncio.get_running_loop()
        self.writer = loop.create_task(self._write(), name=f"{self.id}:events")
        # Not in the writer's `finally`: a DELETE right after POST /runs cancels it before it first runs.
        self.writer.add_done_callback(lambda _: self._ended())
        if self.readers == 0:
            self._start_grace()

    async def open_reader(self, last_event_id: str | None) -> Frames | None:
        log = self.log
        try:
            position = log.parse_id(last_event_id)
        except ValueError:
            raise InvalidRequest("last-event-id", "is not an event id of this run") from None
        if position < log.first_held():
            raise ReplayUnavailable
        if log.closed and position >= log.next_seq:
            return None
        self.attach()
        return Frames(log.frames(position), self.detach)

    async def request_stop(self) -> None:
        self.stop()

    def attach(self) -> None:
        self.readers += 1
        if self._grace_timer is not None:
            self._grace_timer.cancel()
            self._grace_timer = None

    def detach(self) -> None:
        self.readers -= 1
        if self.readers == 0 and not self.log.closed:
            self._start_grace()

    def stop(self) -> None:
        """End the run now, with a `cancelled` error event for whoever reads it."""
        if not self.log.closed:
            self._cancel(CANCELLED)

    async def _write(self) -> None:
        log, collector = self.log, self.collector
        events = collector.events()
        try:
            async for item in events:
                if item is None:
                    log.keepalive()
                    continue
                log.append(item)
                if log.next_seq - log.read_to >= log.window and not (collector.finished or collector.error):
                    await log.wait_for_room()  # readers are behind: hold the producer back
        finally:
            await events.aclose()

    def _ended(self) -> None:
        if self._grace_timer is not None:
            self._grace_timer.cancel()
        collector = self.collector
        if not collector.finished and collector.error is None:
            self.log.append(Event("error", json.dumps(self._last_words())))
        self.log.close()
        self.run.close(collector)  # logs the run's outcome; cancels it if it did not end
        self._on_end(self)

    def _start_grace(self) -> None:
        if self._grace <= 0:
            self._abandon()
        else:
            self._grace_timer = asyncio.get_running_loop().call_later(self._grace, self._abandon)

    def _abandon(self) -> None:
        self._grace_timer = None
        if self.readers != 0 or self.log.closed:
            return
        if self.elsewhere is None or self._grace <= 0:
            self._give_up()
        elif self._checking is None:
            self._checking = asyncio.get_running_loop().create_task(self._abandon_unless_read_elsewhere())

    async def _abandon_unless_read_elsewhere(self) -> None:
        assert self.elsewhere is not None
        try:
            present_until = await self.elsewhere()
        except StoreUnavailable:
            present_until = 0.0  # nobody can reach this run through the store either
        finally:
            self._checking = None
        wait = present_until + self._grace - time.time()
        if self.readers == 0 and not self.log.closed:
            if wait > 0:
                self._grace_timer = asyncio.get_running_loop().call_later(wait, self._abandon)
            else:
                self._give_up()

    def _give_up(self) -> None:
        self.abandoned = True
        self._cancel(CLIENT_GONE)

    def _cancel(self, reason: str) -> None:
        self.run.cancel(reason)  # at once, as a disconnect does; the writer's end logs it
        if self.writer is not None:
            self.writer.cancel()

    def _too_long(self) -> None:
        """The run has failed itself with `run_timeout`; the writer may be held up behind readers that do
        not read (or by nobody reading), with that error still unread in the queue: end the log here."""
        if not self.log.closed:
            self._cancel(TIMED_OUT)

    def fail(self, error: Exception) -> None:
        """End the run with `error` as its `error` event (the shared store was lost, say), even when the
        producer has already ended and the log is held up behind readers."""
        self.run.fail(error)
        if self.run.task is not None and self.run.task.done() and not self.log.closed:
            self._cancel(self.run.stopped_by or CLIENT_GONE)

    def _last_words(self) -> dict[str, object]:
        """The `error` event for a run stopped before its collector saw an end: what stopped it first."""
        if self.run.failure is not None:  # its maximum duration, a shutdown: the event the collector would send
            return error_data(self.run.failure)
        return _STOPPED if self.run.stopped_by == CANCELLED else _ABANDONED
