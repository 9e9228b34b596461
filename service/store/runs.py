"""`MemoryRunStore`: the embedded default (`HAYSTREAM_STORE_URL=memory://`), for one process.

Every run is this process's (`LocalRuns`), so a run is found only by the process that generates it:
with several workers or replicas, use the Redis store (`service/store/redis_runs.py`).
"""

from service.store.base import RunHandle
from service.store.local_runs import LocalRuns
from service.streaming.held_run import HeldRun


class MemoryRunStore:
    def __init__(self, max_runs: int, retention: float) -> None:
        self.local = LocalRuns(max_runs, retention)

    @property
    def available(self) -> bool:
        return True

    async def open(self) -> None:
        return None

    async def close(self, grace: float) -> None:
        await self.local.stop_all(grace)

    def make_room(self) -> None:
        self.local.make_room()

    async def claim(self, owner: bytes, idempotency_key: str, run_id: str) -> RunHandle | None:
        return await self.local.claim(owner, idempotency_key)

    async def unclaim(self, owner: bytes, idempotency_key: str, run_id: str) -> None:
        self.local.unclaim(owner, idempotency_key)

    async def put(self, held: HeldRun) -> None:
        self.local.put(held)

    async def started(self, held: HeldRun) -> None:
        return None

    async def get(self, run_id: str) -> RunHandle | None:
        return self.local.get(run_id)

    async def find(self, owner: bytes, idempotency_key: str) -> RunHandle | None:
        return self.local.find(owner, idempotency_key)

    def ended(self, held: HeldRun) -> None:
        self.local.ended(held)
