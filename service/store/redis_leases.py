"""Leases in Redis: which processes are alive, and which readers are attached through other processes.

- A process's lease is a key with a TTL of `lease` seconds, renewed every `lease / 3`. A run whose
  process's lease has lapsed is dead: the first process that notices (any process with a reader
  of it) ends its stream with `interrupted` (`service/store/redis_log.py::interrupt`). The bound:
  a reader learns of a killed producer within `lease + lease / 3` seconds of its last heartbeat.
- A reader attached to a run through a process that does not generate it holds a lease in the
  run's sorted set of readers, its score the wall-clock time until which it counts as present
  (renewed with the process's lease; set to "now" when it leaves). The owner's grace timer, on
  firing, counts from the highest score as well as from its own last reader (`HeldRun.elsewhere`).
  A sorted set rather than one key per reader: one ZRANGE answers "until when is anyone here".
"""

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as redis

from service.store.redis_client import UNREACHABLE
from service.store.redis_follow import RUN_GONE, Follower
from service.store.redis_keys import control_key, log_key, process_key, readers_key, run_key


class Leases:
    def __init__(self, commands: "redis.Redis", process: str, lease: float, lifetime: float) -> None:
        self._commands = commands
        self.process = process
        self.lease = lease
        self._lifetime_ms = int(lifetime * 1000)
        self.readers: dict[str, str] = {}  # reader id -> run id, for readers attached here to remote runs
        self._pending: set[asyncio.Task[None]] = set()
        self.closed = False  # a flag, not only a cancel: redis-py may turn a cancel mid-command into an error

    @property
    def period(self) -> float:
        return self.lease / 3

    async def renew(self) -> None:
        """This process's lease, and those of the readers attached here."""
        until = time.time() + self.lease
        pipe = self._commands.pipeline(transaction=False)
        pipe.set(process_key(self.process), b"1", px=int(self.lease * 1000))
        pipe.pexpire(control_key(self.process), int(self.lease * 10_000))
        for reader, run_id in self.readers.items():
            pipe.zadd(readers_key(run_id), {reader: until})
            pipe.pexpire(readers_key(run_id), self._lifetime_ms)
        await pipe.execute()

    async def add_reader(self, reader: str, run_id: str) -> None:
        pipe = self._commands.pipeline(transaction=False)
        pipe.zadd(readers_key(run_id), {reader: time.time() + self.lease})
        pipe.pexpire(readers_key(run_id), self._lifetime_ms)
        await pipe.execute()
        self.readers[reader] = run_id

    def remove_reader(self, reader: str) -> None:
        """The reader left: it counts as present until now (the owner's grace starts from here)."""
        run_id = self.readers.pop(reader, None)
        if run_id is not None:
            task = asyncio.get_running_loop().create_task(self._left(reader, run_id))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _left(self, reader: str, run_id: str) -> None:
        with contextlib.suppress(*UNREACHABLE):  # else its lease lapses by itself
            await self._commands.zadd(readers_key(run_id), {reader: time.time()})

    async def present_until(self, run_id: str) -> float:
        """Until when (wall-clock seconds) a reader elsewhere counts as present; 0 if none ever did."""
        top = await self._commands.zrange(readers_key(run_id), -1, -1, withscores=True)
        return float(top[0][1]) if top else 0.0

    async def check(self, follower: Follower) -> tuple[list[str], list[str]]:
        """The runs followed here whose process's lease has lapsed, and those whose record is gone
        (a run whose start failed after its Idempotency-Key was claimed, or one deleted)."""
        by_process: dict[str, list[str]] = {}
        for sub in follower.subscriptions:
            by_process.setdefault(sub.process, []).append(sub.key.removeprefix("hs:run:").removesuffix(":log"))
        if not by_process:
            return [], []
        processes = list(by_process)
        runs = sorted({run for followed in by_process.values() for run in followed})
        pipe = self._commands.pipeline(transaction=False)
        for process in processes:
            pipe.exists(process_key(process))
        for run in runs:
            pipe.exists(run_key(run))
        replies = await pipe.execute()
        alive, recorded = replies[: len(processes)], replies[len(processes) :]
        dead = [run for process, up in zip(processes, alive, strict=True) if not up for run in by_process[process]]
        return dead, [run for run, there in zip(runs, recorded, strict=True) if not there]

    async def keep(self, follower: Follower, on_dead: Callable[[str], Awaitable[None]]) -> None:
        """Forever: renew the leases, hand each run whose owner is dead to `on_dead`, and end the
        readers of runs whose record is gone."""
        while not self.closed:
            try:
                await self.renew()
                dead, gone = await self.check(follower)
                for run_id in set(dead) - set(gone):
                    await on_dead(run_id)
                for run_id in gone:
                    follower.end(log_key(run_id), RUN_GONE)
            except UNREACHABLE:
                pass  # the follower reports it; retried next period
            await asyncio.sleep(self.period)
