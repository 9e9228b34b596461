"""`Writer`: every run's writes to Redis, in one pipeline per turn of the loop, on one connection.

Each run's copy (`service/store/redis_log.py::Mirror`) hands over its commands and awaits their
replies; the writer sends everything handed over since its last round trip as one pipeline. With
100 streams a round trip carries the events of many runs, so Redis costs a process a pipeline per
turn, not one per token per run, and it takes one pooled connection per round trip.
"""

import asyncio
from typing import Any

import redis.asyncio as redis

Command = tuple[str, tuple[Any, ...], dict[str, Any]]


class Writer:
    def __init__(self, commands: "redis.Redis") -> None:
        self._commands = commands
        self._pending: list[tuple[list[Command], asyncio.Future[list[Any]]]] = []
        self._ready = asyncio.Event()
        self.closed = False
        self.round_trips = 0

    async def execute(self, commands: list[Command]) -> list[Any]:
        """The replies to `commands`, errors as values (like `execute(raise_on_error=False)`);
        raises what `UNREACHABLE` names when Redis could not be reached."""
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._pending.append((commands, future))
        self._ready.set()
        return await future

    async def run(self) -> None:
        while not self.closed:
            await self._ready.wait()
            await asyncio.sleep(0)  # one more turn of the loop: the other runs' events of this turn join in
            self._ready.clear()
            batch, self._pending = self._pending, []
            if batch:
                await self._send(batch)

    async def _send(self, batch: list[tuple[list[Command], asyncio.Future[list[Any]]]]) -> None:
        pipe = self._commands.pipeline(transaction=False)
        for commands, _ in batch:
            for name, args, kwargs in commands:
                getattr(pipe, name)(*args, **kwargs)
        try:
            replies = await pipe.execute(raise_on_error=False)
        except Exception as error:  # UNREACHABLE, or anything else: no copy may wait for ever
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        self.round_trips += 1
        start = 0
        for commands, future in batch:
            if not future.done():
                future.set_result(replies[start : start + len(commands)])
            start += len(commands)
