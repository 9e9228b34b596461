"""The store's interfaces: what serving asks of wherever runs live (this process, or a shared Redis).

A `RunHandle` is a run as a reader sees it: a `HeldRun` of this process, or a run another process
owns (`service/store/remote_run.py`). A `RunStore` holds the runs of this process, binds
Idempotency-Keys to runs, and finds runs by id; its two backends are `MemoryRunStore` (one
process: `memory://`) and `RedisRunStore` (any number: `redis://`).
"""

from typing import Protocol

from service.store.local_runs import LocalRuns
from service.streaming.held_run import Frames, HeldRun

__all__ = ["Frames", "RunHandle", "RunStore"]


class RunHandle(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def owner(self) -> bytes: ...

    async def open_reader(self, last_event_id: str | None) -> Frames | None:
        """A reader after `last_event_id` (all when None); None: nothing more will come.

        Raises InvalidRequest for an id that is not one of this run's, ReplayUnavailable when the
        events after it are no longer held.
        """

    async def request_stop(self) -> None:
        """End the run with a `cancelled` error event, wherever it is generated."""


class RunStore(Protocol):
    local: LocalRuns  # this process's held runs

    @property
    def available(self) -> bool:
        """False while the store cannot be reached (readyz says so; new runs get 503)."""

    async def open(self) -> None:
        """Connect; raise StoreUnavailable (naming the redacted URL) if the store cannot be reached."""

    async def close(self, grace: float) -> None:
        """Stop this process's runs (waiting up to `grace` s for their writers) and disconnect."""

    def make_room(self) -> None:
        """Ensure `put` will succeed, evicting if needed; raise `CapacityExceeded` if it cannot."""

    async def claim(self, owner: bytes, idempotency_key: str, run_id: str) -> RunHandle | None:
        """Bind the key to `run_id` if it is free (None), else the run it is bound to."""

    async def unclaim(self, owner: bytes, idempotency_key: str, run_id: str) -> None:
        """The claimed run never started: free the key."""

    async def put(self, held: HeldRun) -> None: ...

    async def started(self, held: HeldRun) -> None:
        """`held` has started: return once every process can find it (POST /runs answers after this)."""

    async def get(self, run_id: str) -> RunHandle | None: ...

    async def find(self, owner: bytes, idempotency_key: str) -> RunHandle | None: ...

    def ended(self, held: HeldRun) -> None:
        """The run ended: keep it for the retention, or forget it now if it cannot be resumed."""
