"""`HeldRun`: a run that outlives its HTTP connections for a while, so a client can come back to it.

The run's `ChunkCollector` runs as a task of its own (one per run), writing every event into the
run's `EventLog` (`service/streaming/event_log.py`); each HTTP response is a reader of that log. Readers come
and go: when the last one leaves, a grace timer starts, and if nobody attaches before it fires
the run is cancelled exactly as a disconnect cancels it (`Run.close`: no more chunks, the upstream
socket shut down, the thread freed) and forgotten. A run also has a lifetime: past
`max_duration` it ends with a `run_timeout` error event. `stop()` (DELETE /runs/{id}) ends it at
once with a `cancelled` error event. Whatever ends it, the log's last frame is `end` or `error`.

With a shared store, readers may also be attached through other processes: `elsewhere` (set by
the store) says until when (wall-clock seconds) one of them counts as present, and the grace
counts from the latest of those too.
"""

import asyncio
import json
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass

from service.errors import InvalidRequest, ReplayUnavailable, RunTooLong, StoreUnavailable
from service.streaming.collector import ChunkCollector
from service.streaming.event_log import EventLog
from service.streaming.run import Run
from service.streaming.sse import Event


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
        max_duration: float,
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
        self._max_duration = max_duration
        self._on_end = on_end
        self._end_message = "The run was cancelled: nobody was reading it."
        self._grace_timer: asyncio.TimerHandle | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self.writer: asyncio.Task[None] | None = None
        self.elsewhere: Callable[[], Awaitable[float]] | None = None
        self._checking: asyncio.Task[None] | None = None

    @property
    def ended(self) -> bool:
        return self.log.closed

    def start(self) -> None:
        """Start writing the run's events into its log; the grace runs until a reader attaches."""
        loop = asyncio.get_running_loop()
        self.writer = loop.create_task(self._write(), name=f"{self.id}:events")
        self._deadline = loop.call_later(self._max_duration, self._too_long)
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
            self._end_message = "The run was stopped."
            self._cancel()

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
            self._ended()

    def _ended(self) -> None:
        if self._grace_timer is not None:
            self._grace_timer.cancel()
        if self._deadline is not None:
            self._deadline.cancel()
        collector = self.collector
        if not collector.finished and collector.error is None:
            data = {"type": "cancelled", "message": self._end_message, "retryable": False}
            self.log.append(Event("error", json.dumps(data)))
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
        self._cancel()

    def _cancel(self) -> None:
        self.run.cancel()  # at once, as a disconnect does; the writer's end logs it
        if self.writer is not None:
            self.writer.cancel()

    def _too_long(self) -> None:
        self._deadline = None
        self.fail(RunTooLong(), "The run went on longer than the service allows.")

    def fail(self, error: Exception, message: str) -> None:
        """End the run with `error` as its `error` event (`message` if the producer had already ended)."""
        self.run.fail(error)
        if self.run.task is not None and self.run.task.done() and not self.log.closed:
            self._end_message = message
            self._cancel()  # the producer is done but the log is held up: end it here
