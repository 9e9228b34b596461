"""A run's event log in a Redis Stream: the owner's copy of its log, and readers on other processes.

The owner (the process generating the run) copies its `EventLog` entry by entry (`mirror`), in
order, each with its explicit id (`service/store/redis_keys.py`), in one pipeline per batch. The
stream is bounded like the log: `MAXLEN ~ replay_max_events` on each XADD, and `XTRIM MINID ~` once
the frames held pass `replay_max_bytes`. When the run ends its keys get the retention as their TTL
(and are deleted at once if it was abandoned: not resumable). If Redis cannot be reached the run
ends (`store_unavailable`) and the copy goes on being retried, so what Redis holds is never a log
with a hole. An XADD refused because its id is taken means another process declared the owner dead
(`interrupt`): the owner then stops the run.
"""

import asyncio
import logging
from collections import deque
from collections.abc import AsyncGenerator, Callable

import redis.asyncio as redis
from redis.exceptions import ResponseError

from service.store.redis_client import UNREACHABLE
from service.store.redis_follow import Follower, interrupted_frame
from service.store.redis_keys import TERMINAL, entry_id, idempotency_key, log_key, run_key, run_keys, seq_of
from service.store.redis_writer import Command, Writer
from service.streaming.held_run import HeldRun
from service.streaming.sse import KEEPALIVE_FRAME

logger = logging.getLogger("service.store.redis_log")

RETRY_DELAY = 0.5
FINISH_ATTEMPTS = 20


def event_name(frame: bytes) -> bytes:
    """The `event:` field of one of our frames (`id: ...\\nevent: NAME\\n...`)."""
    for line in frame.split(b"\n", 2)[:2]:
        if line.startswith(b"event: "):
            return line[7:]
    return b""


class Mirror:
    def __init__(
        self,
        commands: "redis.Redis",
        writer: Writer,
        held: HeldRun,
        *,
        max_events: int,
        max_bytes: int,
        retention: float,
        lifetime: float,
        record: dict[str, str],
    ) -> None:
        self._commands = commands
        self._writer = writer
        self.held = held
        self._key = log_key(held.id)
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._retention_ms = int(retention * 1000)
        self._lifetime_ms = int(lifetime * 1000)  # the keys' TTL while the run goes on
        self._record = record  # the run's record (owner hash, process): written with its first event
        self._sizes: deque[int] = deque()  # the sizes of the frames held, oldest first
        self._bytes = 0
        self._first = 0  # the first event number the stream should still hold
        self.written = 0  # the next event number to write
        self.published = asyncio.Event()  # set once the record and the first event are in Redis (or never will be)

    async def run(self, on_lost: Callable[[], None]) -> None:
        lost = False
        give_up = asyncio.get_running_loop().time() + self._retention_ms / 1000 + self._lifetime_ms / 1000
        async for first, frames in self.held.log.copy(0):
            while asyncio.get_running_loop().time() < give_up:
                try:
                    if lost:  # what reached Redis before the failure need not be written again
                        last = await last_entry(self._commands, self.held.id)
                        self.written = max(self.written, 0 if last is None else last[0] + 1)
                    if not await self._write(first, frames):
                        self.held.stop()  # someone else ended this run in the stream: stop generating it
                        return
                    break
                except UNREACHABLE:
                    if not lost:
                        lost = True
                        self.published.set()
                        on_lost()
                    await asyncio.sleep(RETRY_DELAY)
            else:
                self.published.set()
                return  # Redis stayed away for longer than the run could matter: its keys expire anyway
        self.published.set()
        await self._finish()

    async def _write(self, first: int, frames: list[bytes]) -> bool:
        """Write the frames not yet written; False if an id was taken by another process's entry."""
        start = max(self.written, first)
        todo = frames[start - first :]
        if not todo:
            return True
        commands: list[Command] = []
        for seq, frame in enumerate(todo, start=start):
            fields: dict[bytes, bytes] = {b"f": frame, b"e": event_name(frame)}
            commands.append(("xadd", (self._key, fields), {"id": entry_id(seq), "maxlen": self._max_events}))
        if self._first:
            commands.append(("xtrim", (self._key,), {"minid": entry_id(self._first), "approximate": True}))
        if start == 0:
            commands.append(("hset", (run_key(self.held.id),), {"mapping": self._record}))
            for key in (self._key, run_key(self.held.id)):
                commands.append(("pexpire", (key, self._lifetime_ms), {}))
        results = await self._writer.execute(commands)
        for result in results:
            if isinstance(result, UNREACHABLE):
                raise result
        for frame in todo:
            self._held_frame(len(frame))
        self.written = start + len(todo)
        self.published.set()
        return not any(isinstance(result, ResponseError) for result in results)

    def _held_frame(self, size: int) -> None:
        self._sizes.append(size)
        self._bytes += size
        while self._bytes > self._max_bytes and len(self._sizes) > 1:
            self._bytes -= self._sizes.popleft()
            self._first += 1

    def _keys(self) -> list[str]:
        held = self.held
        keys = list(run_keys(held.id))
        if held.idempotency_key is not None:
            keys.append(idempotency_key(held.owner, held.idempotency_key))
        return keys

    async def _finish(self) -> None:
        """The run ended: its keys live for the retention; an abandoned run's go now (else they expire later)."""
        for _ in range(FINISH_ATTEMPTS):
            try:
                if self.held.abandoned:
                    await self._commands.delete(*self._keys())
                else:
                    pipe = self._commands.pipeline(transaction=False)
                    for key in self._keys():
                        pipe.pexpire(key, self._retention_ms)
                    await pipe.execute()
                return
            except UNREACHABLE:
                await asyncio.sleep(RETRY_DELAY)


async def last_entry(commands: "redis.Redis", run_id: str) -> tuple[int, bool] | None:
    """The last event's number and whether it ends the run; None for an empty (or missing) stream."""
    entries = await commands.xrevrange(log_key(run_id), count=1)
    if not entries:
        return None
    entry, fields = entries[0]
    return seq_of(entry), fields.get(b"e") in TERMINAL


async def first_entry(commands: "redis.Redis", run_id: str) -> int | None:
    entries = await commands.xrange(log_key(run_id), count=1)
    return seq_of(entries[0][0]) if entries else None


async def interrupt(commands: "redis.Redis", run_id: str, retention: float) -> None:
    """The run's owner is gone: end its stream with an `interrupted` error, once.

    Whoever notices first writes it, at the id after the last event; a second writer's XADD is
    refused (the id is taken) and changes nothing. No Lua.
    """
    last = await last_entry(commands, run_id)
    if last is not None and last[1]:
        return
    seq = 0 if last is None else last[0] + 1
    frame = interrupted_frame(f"{run_id}:{seq}")
    try:
        await commands.xadd(log_key(run_id), {b"f": frame, b"e": b"error"}, id=entry_id(seq))
    except ResponseError:
        return  # another process wrote it first (or the owner was not dead after all)
    logger.warning("run interrupted: its process is gone", extra={"run_id": run_id})
    pipe = commands.pipeline(transaction=False)
    for key in run_keys(run_id):
        pipe.pexpire(key, int(retention * 1000))
    await pipe.execute()


async def remote_frames(
    follower: Follower, run_id: str, position: int, process: str, keepalive: float
) -> AsyncGenerator[bytes, None]:
    """A reader on this process of a run another process generates: replay from `position`, then live."""
    sub = await follower.follow(log_key(run_id), position, process)
    try:
        while True:
            try:
                async with asyncio.timeout(keepalive):
                    frames, terminal = await sub.queue.get()
            except TimeoutError:
                yield KEEPALIVE_FRAME
                continue
            yield frames
            if terminal:
                return
    finally:
        follower.unfollow(sub)
