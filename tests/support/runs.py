"""A run this process holds, looked up through serving as a route would."""

from service.serving import Serving
from service.streaming.held_run import HeldRun


async def local_run(serving: Serving, run_id: str) -> HeldRun:
    found = await serving.get(run_id)
    assert isinstance(found, HeldRun), "the run is not held by this process"
    return found
