"""`Follower`: one blocking XREAD per process that feeds every local reader of runs owned elsewhere.

Each reader is a `Subscription` (a stream key, the next event number it wants, an asyncio queue).
The loop reads every followed stream in one `XREAD BLOCK`, from the smallest position any of its
readers still needs, and hands each reader the entries at or after its own position; so a reader
that joins late gets its replay from the same loop, and 200 readers cost one connection. The same
XREAD also reads this process's control stream (what other processes ask of it: stop a run), and a
new reader that needs entries the running XREAD does not ask for wakes it with an entry there.

When Redis cannot be reached, every reader gets a `store_unavailable` error (no id: a reconnect
resumes from the last event it got) and ends; the loop retries, and recovers once Redis is back.
"""

import asyncio
import json
import logging
from collections.abc import Callable

import redis.asyncio as redis

from service.errors import INTERRUPTED_MESSAGE, STORE_UNAVAILABLE_MESSAGE
from service.store.redis_client import UNREACHABLE
from service.store.redis_keys import TERMINAL, entry_id, seq_of
from service.streaming.sse import Event, encode

logger = logging.getLogger("service.store.follower")

COUNT = 512  # entries per stream per XREAD
RETRY_DELAY = 0.2  # seconds between attempts while Redis is unreachable
Batch = tuple[bytes, bool]  # SSE bytes, and whether the run's last event is among them


def _error_frame(kind: str, message: str, retryable: bool, event_id: str | None = None) -> bytes:
    data = json.dumps({"type": kind, "message": message, "retryable": retryable})
    return encode(Event("error", data, event_id))


STORE_UNAVAILABLE = _error_frame("store_unavailable", STORE_UNAVAILABLE_MESSAGE, True)
REPLAY_UNAVAILABLE = _error_frame(
    "replay_unavailable", "This reader fell behind further than the run's events are held.", False
)
RUN_GONE = _error_frame("run_expired", "The run is no longer held.", False)


def interrupted_frame(event_id: str) -> bytes:
    return _error_frame("interrupted", INTERRUPTED_MESSAGE, True, event_id)


class Subscription:
    def __init__(self, key: str, position: int, process: str) -> None:
        self.key = key
        self.position = position  # the next event number this reader takes
        self.process = process  # the process generating the run (whose lease says it is alive)
        self.queue: asyncio.Queue[Batch] = asyncio.Queue()


class Follower:
    def __init__(
        self,
        blocking: "redis.Redis",
        commands: "redis.Redis",
        control: str,
        on_control: Callable[[dict[bytes, bytes]], None],
        block: float,
    ) -> None:
        self._blocking = blocking
        self._commands = commands
        self._control = control
        self._control_at = "0-0"
        self._on_control = on_control
        self._block_ms = int(block * 1000)
        self._subs: dict[str, set[Subscription]] = {}
        self._asking: dict[str, int] = {}  # what the running XREAD asks for: key -> first position
        self.healthy = True
        self.reads = 0
        self.handed = 0  # batches of events handed to readers here
        self.closed = False  # a flag, not only a cancel: redis-py may turn a cancel mid-command into an error

    @property
    def subscriptions(self) -> list[Subscription]:
        return [sub for subs in self._subs.values() for sub in subs]

    async def follow(self, key: str, position: int, process: str) -> Subscription:
        sub = Subscription(key, position, process)
        self._subs.setdefault(key, set()).add(sub)
        if self._asking.get(key, position + 1) > position:
            await self._commands.xadd(self._control, {b"wake": b""}, maxlen=100)
        return sub

    def unfollow(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.key)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.key]

    def end(self, key: str, frame: bytes) -> None:
        """End every reader of `key` with `frame` (an error event)."""
        for sub in self._subs.pop(key, set()):
            sub.queue.put_nowait((frame, True))

    async def run(self) -> None:
        while not self.closed:
            self._asking = {key: min(sub.position for sub in subs) for key, subs in self._subs.items()}
            streams: dict[str, str] = {self._control: self._control_at}
            streams.update(
                (key, entry_id(position - 1) if position else "0-0") for key, position in self._asking.items()
            )
            try:
                reply = await self._blocking.xread(streams, count=COUNT, block=self._block_ms)  # type: ignore[arg-type]
            except UNREACHABLE as error:
                if self.closed:
                    return
                self._lost(error)
                await asyncio.sleep(RETRY_DELAY)
                continue
            if not self.healthy:
                logger.info("store reachable again")
            self.healthy = True
            self.reads += 1
            asked, self._asking = self._asking, {}
            for key, entries in reply or ():
                self._deliver(key.decode(), entries, asked)

    def _lost(self, error: BaseException) -> None:
        self._asking = {}
        if self.healthy:
            logger.warning("store unreachable", extra={"error": type(error).__name__})
        self.healthy = False
        for key in list(self._subs):
            self.end(key, STORE_UNAVAILABLE)

    def _deliver(self, key: str, entries: list[tuple[bytes, dict[bytes, bytes]]], asked: dict[str, int]) -> None:
        if key == self._control:
            self._control_at = entries[-1][0].decode()
            for _, fields in entries:
                self._on_control(fields)
            return
        for sub in list(self._subs.get(key, ())):
            if sub.position >= asked.get(key, sub.position + 1):  # else it came after this XREAD: next one
                self._hand(sub, entries)

    def _hand(self, sub: Subscription, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        frames: list[bytes] = []
        terminal = False
        for entry, fields in entries:
            seq = seq_of(entry)
            if seq < sub.position:
                continue
            if seq > sub.position:  # trimmed before this reader took it
                frames.append(REPLAY_UNAVAILABLE)
                terminal = True
                break
            frames.append(fields[b"f"])
            sub.position = seq + 1
            if fields.get(b"e") in TERMINAL:
                terminal = True
                break
        if frames:
            self.handed += 1
            sub.queue.put_nowait((b"".join(frames), terminal))
        if terminal:
            self.unfollow(sub)
