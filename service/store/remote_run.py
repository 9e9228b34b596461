"""`RemoteRun`: a run another process generates, read and stopped from this one through Redis."""

import secrets
from dataclasses import dataclass
from functools import partial
from typing import Protocol

import redis.asyncio as redis

from service.errors import InvalidRequest, ReplayUnavailable
from service.store.base import Frames
from service.store.redis_client import reachable
from service.store.redis_follow import Follower
from service.store.redis_keys import control_key
from service.store.redis_leases import Leases
from service.store.redis_log import first_entry, last_entry, remote_frames

CONTROL_MAXLEN = 1000


class Shared(Protocol):
    """What a remote run needs of its process's Redis store (`RedisRunStore`)."""

    commands: "redis.Redis"
    follower: Follower
    leases: Leases
    keepalive: float


@dataclass(frozen=True)
class RemoteRun:
    id: str
    owner: bytes
    process: str  # the process generating it
    store: Shared

    async def open_reader(self, last_event_id: str | None) -> Frames | None:
        position = self._position(last_event_id)
        commands = self.store.commands
        with reachable():
            first = await first_entry(commands, self.id)
            last = await last_entry(commands, self.id)
            if last is not None and last[1] and position > last[0]:
                if position == last[0] + 1:
                    return None  # it ended, and the reader has it all
                raise InvalidRequest("last-event-id", "is not an event id of this run")
            if first is not None and position < first:
                raise ReplayUnavailable
            reader = "rd_" + secrets.token_hex(8)
            await self.store.leases.add_reader(reader, self.id)
            frames = remote_frames(self.store.follower, self.id, position, self.process, self.store.keepalive)
        return Frames(frames, partial(self.store.leases.remove_reader, reader))

    async def request_stop(self) -> None:
        """Ask the owner, on its control stream; its follower stops the run at once."""
        with reachable():
            await self.store.commands.xadd(
                control_key(self.process), {b"stop": self.id.encode()}, maxlen=CONTROL_MAXLEN
            )

    def _position(self, last_event_id: str | None) -> int:
        """The event number after `last_event_id`. Any number of this run's is accepted while it runs:
        the owner's copy into Redis may be an event or two behind what a client got from the owner."""
        if last_event_id is None:
            return 0
        prefix, _, number = last_event_id.rpartition(":")
        if prefix != self.id or not number.isdigit():
            raise InvalidRequest("last-event-id", "is not an event id of this run")
        return int(number) + 1
