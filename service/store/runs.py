"""Where held runs live between connections: the `RunStore` interface and its in-memory store.

The store is per process. With several workers (`--workers`) or replicas, a reconnect can land
on another process, which does not hold the run: resuming then needs sticky routing (by run id
or by client) until a shared store implements this interface.

Bounds: at most `max_runs` runs (running or finished). A finished run stays `retention` seconds,
then is forgotten; when the store is full, the oldest finished run is forgotten first, and when
every run in it is still running, a new run is refused (`CapacityExceeded`: 503). An
Idempotency-Key is remembered for as long as its run is.
"""

import asyncio
from typing import Protocol

from service.errors import CapacityExceeded
from service.streaming.held_run import HeldRun


class RunStore(Protocol):
    def get(self, run_id: str) -> HeldRun | None: ...

    def find(self, owner: bytes, idempotency_key: str) -> HeldRun | None: ...

    def make_room(self) -> None:
        """Ensure `put` will succeed, evicting if needed; raise `CapacityExceeded` if it cannot."""

    def put(self, held: HeldRun) -> None: ...

    def ended(self, held: HeldRun) -> None:
        """The run ended: keep it for the retention, or forget it now if it cannot be resumed."""

    def evict(self, run_id: str) -> None: ...

    async def stop_all(self, grace: float) -> None:
        """Stop every run and wait (up to `grace` seconds) for their event writers to end."""


class MemoryRunStore:
    def __init__(self, max_runs: int, retention: float) -> None:
        self.max_runs = max_runs
        self.retention = retention
        self._runs: dict[str, HeldRun] = {}  # in insertion order: oldest first
        self._keys: dict[tuple[bytes, str], str] = {}
        self._expiry: dict[str, asyncio.TimerHandle] = {}

    def get(self, run_id: str) -> HeldRun | None:
        return self._runs.get(run_id)

    def find(self, owner: bytes, idempotency_key: str) -> HeldRun | None:
        run_id = self._keys.get((owner, idempotency_key))
        return None if run_id is None else self._runs.get(run_id)

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
        writers = [held.writer for held in self._runs.values() if held.writer is not None]
        for held in list(self._runs.values()):
            held.stop()
        for timer in self._expiry.values():
            timer.cancel()
        self._expiry.clear()
        if writers:
            await asyncio.wait(writers, timeout=grace)
