"""`EventLog`: a run's events, encoded once, that any number of readers stream from any point.

The run's collector task appends each event as SSE bytes with an id `"<run_id>:<n>"` (n = 0 for
`metadata`, then 1, 2, ... in order); an HTTP response is a reader that sends the frames after
a given id, then waits for more. Appending costs a list append, a byte count and waking the
readers that are waiting (each waits on a future of its own only once it has caught up): no task,
timer or lock per event. A reader that finds several frames waiting sends them as one write.

Bounds: the log keeps at most `max_events` frames and `max_bytes` bytes of frames the furthest
reader has taken, dropping the oldest; frames nobody has taken yet are never dropped (there are at
most `window` of them, see below). A request to resume before the oldest frame held is refused
(`first_held`); a reader that falls that far behind while streaming gets an `error` event of type
`replay_unavailable` (without an id, so a reconnect asks again from where it was) and its stream ends.

Backpressure: the producer (`wait_for_room`) waits while it is `window` frames ahead of the
furthest reader, so the upstream goes at the pace of the fastest reader, as it did when the
response read the queue itself; with no reader attached it stops `window` frames ahead of the
last one (or of the start), holding the upstream until someone reads or the run is cancelled.

Frames are encoded by the run's `Encoder` (`service/streaming/sse.py`), chosen when the run starts:
the service's named events by default, OpenAI's chunks for /v1/chat/completions.

Keep-alives are never stored: `keepalive()` wakes the readers that are waiting, and each sends
its own comment.
"""

import asyncio
import json
from collections.abc import AsyncGenerator

from service.streaming.sse import EVENTS, KEEPALIVE_FRAME, Encoder, Event

_COMPACT_AT = 1024  # dropped frames are deleted from the list's head in batches, not one by one


REPLAY_UNAVAILABLE = Event(
    "error",
    json.dumps(
        {
            "type": "replay_unavailable",
            "message": "This reader fell behind further than the run's events are held.",
            "retryable": False,
        }
    ),
)


class EventLog:
    def __init__(self, run_id: str, *, max_events: int, max_bytes: int, window: int, encoder: Encoder = EVENTS) -> None:
        self._prefix = f"{run_id}:"
        self.encoder = encoder
        self._replay_unavailable = encoder(REPLAY_UNAVAILABLE, None)
        self._max_events = max_events
        self._max_bytes = max_bytes
        self.window = window
        self._frames: list[bytes] = []
        self._head = 0  # frames[:head] are dropped, awaiting compaction
        self._first = 0  # the sequence number of frames[head]
        self.next_seq = 0  # the sequence number the next appended frame gets
        self._bytes = 0
        self._waiters: list[asyncio.Future[bool]] = []
        self.closed = False
        self.read_to = 0  # the furthest any reader got (the next frame it will take)
        self._room: asyncio.Future[None] | None = None

    # Writing (the run's collector task).

    def append(self, event: Event) -> None:
        frame = self.encoder(event, self._prefix + str(self.next_seq))
        self._frames.append(frame)
        self.next_seq += 1
        self._bytes += len(frame)
        if self.next_seq - self._first > self._max_events or self._bytes > self._max_bytes:
            self._drop_oldest()
        self._wake(False)

    def keepalive(self) -> None:
        self._wake(True)

    def close(self) -> None:
        """No more frames: readers send what is left and end."""
        self.closed = True
        self._wake(False)
        self._release_producer()

    async def wait_for_room(self) -> None:
        """Wait while the producer is `window` frames ahead of every reader."""
        while self.next_seq - self.read_to >= self.window and not self.closed:
            self._room = asyncio.get_running_loop().create_future()
            await self._room

    # Reading (one generator per HTTP response).

    def first_held(self) -> int:
        return self._first

    def parse_id(self, last_event_id: str | None) -> int:
        """The sequence number to resume at after `last_event_id` (0: from the start).

        Raises ValueError for an id that is not one of this run's.
        """
        if last_event_id is None:
            return 0
        prefix, _, number = last_event_id.rpartition(":")
        if prefix + ":" != self._prefix or not number.isdigit() or int(number) >= self.next_seq:
            raise ValueError(last_event_id)
        return int(number) + 1

    async def frames(self, position: int) -> AsyncGenerator[bytes, None]:
        """Frames from sequence number `position` on, and keep-alives while waiting; ends when closed."""
        loop = asyncio.get_running_loop()
        while True:
            if position < self.next_seq:
                if position < self._first:  # this reader fell further behind than the log holds
                    yield self._replay_unavailable
                    return
                start = self._head + position - self._first
                batch = self._frames[start] if position + 1 == self.next_seq else b"".join(self._frames[start:])
                position = self.next_seq
                if position > self.read_to:
                    self.read_to = position
                    self._release_producer()
                yield batch
            elif self.closed:
                return
            else:
                waiter: asyncio.Future[bool] = loop.create_future()
                self._waiters.append(waiter)
                try:
                    keepalive = await waiter
                finally:
                    if not waiter.done():
                        self._waiters.remove(waiter)
                if keepalive and position == self.next_seq and not self.closed:
                    yield KEEPALIVE_FRAME

    async def copy(self, position: int) -> AsyncGenerator[tuple[int, list[bytes]], None]:
        """For a copy of the log kept elsewhere: `(sequence number of the first, frames)`, each frame whole,
        from `position` on; counts as a reader for the backpressure; ends when closed (or fallen behind)."""
        while True:
            if position < self.next_seq:
                if position < self._first:
                    return
                start = self._head + position - self._first
                batch, first = self._frames[start:], position
                position = self.next_seq
                if position > self.read_to:
                    self.read_to = position
                    self._release_producer()
                yield first, batch
            elif self.closed:
                return
            else:
                waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
                self._waiters.append(waiter)
                try:
                    await waiter
                finally:
                    if not waiter.done():
                        self._waiters.remove(waiter)

    # Internals.

    def _wake(self, keepalive: bool) -> None:
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(keepalive)

    def _release_producer(self) -> None:
        room = self._room
        if room is not None:
            self._room = None
            if not room.done():
                room.set_result(None)

    def _drop_oldest(self) -> None:
        while self._first < self.read_to and (
            self.next_seq - self._first > self._max_events or self._bytes > self._max_bytes
        ):
            self._bytes -= len(self._frames[self._head])
            self._head += 1
            self._first += 1
        if self._head >= _COMPACT_AT and self._head * 2 >= len(self._frames):
            del self._frames[: self._head]
            self._head = 0
