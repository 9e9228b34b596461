"""`LocalRuns`: the runs this process generates, held between connections, and their Idempotency-Keys.

Bounds: at most `max_runs` runs (running or finished). A finished run stays `retention` seconds,
then is forgotten; when full, the oldest finished run is forgotten first, and when every run is
still running, a new run is refused (`CapacityExceeded`: 503). An Idempotency-Key is remembered for
as long as its run is. A key is claimed before its run is prepared, so two requests racing with
one key start one run: the second waits for the first's run to be held (or to fail), then attaches.
"""

import asyncio
from collections.abc import Iterator

from service.errors import CapacityExceeded
from service.streaming.held_run import HeldRun

Key = tuple[bytes, str]


class LocalRuns:
    def __init__(self, max_runs: int, retention: float) -> None:
        self.max_runs = max_runs
        self.retention = retention
        self._runs: dict[str, HeldRun] = {}  # in insertion order: oldest first
        self._keys: dict[Key, str] = {}
        self._claims: dict[Key, asyncio.Event] = {}  # keys claimed by a run still being prepared
        self._expiry: dict[str, asyncio.TimerHandle] = {}

    def __iter__(self) -> Iterator[HeldRun]:
        return iter(list(self._runs.values()))

    def get(self, run_id: str) -> HeldRun | None:
        return self._runs.get(run_id)

    def find(self, owner: bytes, idempotency_key: str) -> HeldRun | None:
        run_id = self._keys.get((owner, idempotency_key))
        return None if run_id is None else self._runs.get(run_id)

    async def claim(self, owner: bytes, idempotency_key: str) -> HeldRun | None:
        """None: the key is now this caller's to `put` (or `unclaim`); else the run holding it."""
        key = (owner, idempotency_key)
        while (pending := self._claims.get(key)) is not None:
            await pending.wait()
        held = self.find(owner, idempotency_key)
        if held is None:
            self._claims[key] = asyncio.Event()
        return held

    def unclaim(self, owner: bytes, idempotency_key: str) -> None:
        pending = self._claims.pop((owner, idempotency_key), None)
        if pending is not None:
            pending.set()

    def make_room(self) -> None:
        if len(self._runs) < self.max_runs:
            return
        oldest_ended = next((run_id for run_id, held in self._runs.items() if held.ended), None)
        if oldest_ended is None:
            raise CapacityExceeded
        self.evict(oldest_ended)

    def put(self, held: HeldRun) -> None:
        self.make_room()
        self._runs[held.id] = held
        if held.idempotency_key is not None:
            self._keys[(held.owner, held.idempotency_key)] = held.id
            self.unclaim(held.owner, held.idempotency_key)

    def ended(self, held: HeldRun) -> None:
        if held.abandoned:
            self.evict(held.id)
        elif held.id in self._runs:
            loop = asyncio.get_running_loop()
            self._expiry[held.id] = loop.call_later(self.retention, self.evict, held.id)

    def evict(self, run_id: str) -> None:
        held = self._runs.pop(run_id, None)
        timer = self._expiry.pop(run_id, None)
        if timer is not None:
            timer.cancel()
        if held is not None and held.idempotency_key is not None:
            key = (held.owner, held.idempotency_key)
            if self._keys.get(key) == run_id:
                del self._keys[key]

    async def stop_all(self, grace: float) -> None:
        """Stop every run and wait (up to `grace` seconds) for their event writers to end."""
        writers = [held.writer for held in self._runs.values() if held.writer is not None]
        for held in list(self._runs.values()):
            held.stop()
        for timer in self._expiry.values():
            timer.cancel()
        self._expiry.clear()
        if writers:
            await asyncio.wait(writers, timeout=grace)
