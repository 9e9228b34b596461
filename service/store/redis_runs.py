"""`RedisRunStore`: runs shared by every process through one Redis (`HAYSTREAM_STORE_URL=redis://`).

The process that starts a run generates it and holds it (`LocalRuns`) as the memory store does;
its local readers read its `EventLog`. What other processes need is in Redis: the run's record
(owner hash, process), its events (`service/store/redis_log.py`), its Idempotency-Key (`SET NX`
with a TTL, claimed before the run is prepared: whoever sets it generates, everyone else
attaches), the leases (`service/store/redis_leases.py`) and a control stream per process, read
by its `Follower`, on which `DELETE /runs/{id}` sent to another process asks the owner to stop.
"""

import asyncio
import contextlib
import logging
import secrets
from functools import partial

from service.errors import StoreUnavailable
from service.settings import Settings
from service.store.base import RunHandle
from service.store.local_runs import LocalRuns
from service.store.redis_client import UNREACHABLE, blocking_client, command_client, reachable
from service.store.redis_follow import Follower
from service.store.redis_keys import control_key, idempotency_key, process_key, run_key
from service.store.redis_leases import Leases
from service.store.redis_log import Mirror, interrupt
from service.store.redis_writer import Writer
from service.store.remote_run import RemoteRun
from service.streaming.held_run import HeldRun

logger = logging.getLogger("service.store.redis")

PUBLISH_WAIT = 1.0  # seconds POST /runs waits for its run to be findable by every process


class RedisRunStore:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.local = LocalRuns(settings.runs_max_retained, settings.runs_retention)
        self.process = "proc_" + secrets.token_hex(8)
        self.keepalive = settings.keepalive_interval
        self._lifetime = settings.run_max_duration + settings.runs_retention
        self.commands = command_client(settings.store_url, self.process)
        self.leases = Leases(self.commands, self.process, settings.store_lease, self._lifetime)
        self._blocking = blocking_client(settings.store_url, self.process, self.leases.period)
        self.follower = Follower(
            self._blocking, self.commands, control_key(self.process), self._control, self.leases.period
        )
        self.writer = Writer(self.commands)  # one pooled connection per round trip
        self._tasks: list[asyncio.Task[None]] = []
        self._mirrors: dict[str, tuple[Mirror, asyncio.Task[None]]] = {}  # by run id, while each writes to Redis

    @property
    def available(self) -> bool:
        return self.follower.healthy

    async def open(self) -> None:
        try:
            await self.commands.ping()
            await self.leases.renew()
        except UNREACHABLE as error:
            message = f"HAYSTREAM_STORE_URL={self.settings.redacted_store_url}: Redis cannot be reached"
            logger.error("cannot start: %s (%s)", message, type(error).__name__)
            await self._disconnect()
            raise StoreUnavailable(message) from None
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self.follower.run(), name="store-follower"),
            loop.create_task(self.leases.keep(self.follower, self._owner_dead), name="store-leases"),
            loop.create_task(self.writer.run(), name="store-writer"),
        ]
        logger.info("store connected", extra={"store": self.settings.redacted_store_url, "store_process": self.process})

    async def close(self, grace: float) -> None:
        await self.local.stop_all(grace)
        if self._mirrors:
            _, late = await asyncio.wait([task for _, task in self._mirrors.values()], timeout=grace)
            for task in late:  # still retrying a Redis that is gone: what it holds is lost with the process
                task.cancel()
        self.follower.closed = self.leases.closed = self.writer.closed = True
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=self.leases.period + 1)
        with contextlib.suppress(*UNREACHABLE):
            await self.commands.delete(process_key(self.process), control_key(self.process))
        await self._disconnect()

    async def _disconnect(self) -> None:
        await self._blocking.aclose()
        await self.commands.aclose()

    def make_room(self) -> None:
        if not self.available:
            raise StoreUnavailable
        self.local.make_room()

    async def claim(self, owner: bytes, idempotency_key_: str, run_id: str) -> RunHandle | None:
        held = await self.local.claim(owner, idempotency_key_)
        if held is not None:
            return held
        key = idempotency_key(owner, idempotency_key_)
        try:
            with reachable():
                await self._record(run_id, owner)  # first, so whoever finds the key finds the run
                if await self.commands.set(key, run_id, nx=True, px=int(self._lifetime * 1000)):
                    return None  # this run's: `put` (or `unclaim`) releases the local claim
                bound = await self.commands.get(key)
                await self.commands.delete(run_key(run_id))
        except BaseException:
            self.local.unclaim(owner, idempotency_key_)
            raise
        self.local.unclaim(owner, idempotency_key_)
        found = None if bound is None else await self.get(bound.decode())
        return found if found is not None else await self._take_over(key, owner, idempotency_key_, run_id)

    async def _take_over(self, key: str, owner: bytes, idempotency_key_: str, run_id: str) -> RunHandle | None:
        """The key outlived its run (or expired just now): bind it to this run."""
        await self.local.claim(owner, idempotency_key_)
        with reachable():
            await self._record(run_id, owner)
            await self.commands.set(key, run_id, px=int(self._lifetime * 1000))
        return None

    async def unclaim(self, owner: bytes, idempotency_key_: str, run_id: str) -> None:
        self.local.unclaim(owner, idempotency_key_)
        key = idempotency_key(owner, idempotency_key_)
        try:
            if await self.commands.get(key) == run_id.encode():
                await self.commands.delete(key)
            await self.commands.delete(run_key(run_id))
        except UNREACHABLE:
            pass  # both expire by themselves

    def _fields(self, owner: bytes) -> dict[str, str]:
        return {"owner": owner.hex(), "process": self.process}

    async def _record(self, run_id: str, owner: bytes) -> None:
        pipe = self.commands.pipeline(transaction=False)
        pipe.hset(run_key(run_id), mapping=self._fields(owner))
        pipe.pexpire(run_key(run_id), int(self._lifetime * 1000))
        await pipe.execute()

    async def put(self, held: HeldRun) -> None:
        """No round trip before the run starts: its record goes with its first event (a claimed key's
        run was recorded when claimed), so a run costs its first token nothing more than in memory."""
        self.local.put(held)
        held.elsewhere = partial(self._present_until, held.id)
        settings = self.settings
        mirror = Mirror(
            self.commands,
            self.writer,
            held,
            max_events=settings.replay_max_events,
            max_bytes=settings.replay_max_bytes,
            retention=settings.runs_retention,
            lifetime=self._lifetime,
            record=self._fields(held.owner),
        )
        lost = partial(held.fail, StoreUnavailable())
        task = asyncio.get_running_loop().create_task(mirror.run(lost), name=f"{held.id}:mirror")
        self._mirrors[held.id] = mirror, task
        task.add_done_callback(lambda _: self._mirrors.pop(held.id, None))

    async def started(self, held: HeldRun) -> None:
        mirroring = self._mirrors.get(held.id)
        if mirroring is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(PUBLISH_WAIT):
                    await mirroring[0].published.wait()

    async def get(self, run_id: str) -> RunHandle | None:
        held = self.local.get(run_id)
        if held is not None:
            return held
        mirroring = self._mirrors.get(run_id)
        if mirroring is not None and mirroring[0].held.abandoned:
            return None  # forgotten here at once; its mirror is deleting its keys (`Mirror._finish`)
        with reachable():
            record: dict[bytes, bytes] = await self.commands.hgetall(run_key(run_id))  # type: ignore[misc]
        if not record:
            return None
        return RemoteRun(run_id, bytes.fromhex(record[b"owner"].decode()), record[b"process"].decode(), self)

    async def find(self, owner: bytes, idempotency_key_: str) -> RunHandle | None:
        held = self.local.find(owner, idempotency_key_)
        if held is not None:
            return held
        with reachable():
            bound = await self.commands.get(idempotency_key(owner, idempotency_key_))
        return None if bound is None else await self.get(bound.decode())

    def ended(self, held: HeldRun) -> None:
        self.local.ended(held)

    async def _present_until(self, run_id: str) -> float:
        with reachable():
            return await self.leases.present_until(run_id)

    def _control(self, fields: dict[bytes, bytes]) -> None:
        run_id = fields.get(b"stop")
        held = None if run_id is None else self.local.get(run_id.decode())
        if held is not None:
            logger.info("run stopped from another process", extra={"run_id": held.id})
            held.stop()

    async def _owner_dead(self, run_id: str) -> None:
        await interrupt(self.commands, run_id, self.settings.runs_retention)
