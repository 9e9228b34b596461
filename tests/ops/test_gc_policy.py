"""The garbage collector's settings for the served process (service/ops/gc_policy.py)."""

import asyncio
import gc
import subprocess
import sys

from service.ops.gc_policy import IdleGC
from tests.support.waiting import until


def test_the_served_app_freezes_its_start_up_heap_and_collects_fully_less_often() -> None:
    """Checked in a fresh interpreter: the settings are process-wide and would leak into other tests."""
    script = (
        "import gc; from service.app import app_from_env; from service.ops.gc_policy import IdleGC; "
        "default = gc.get_threshold(); app_from_env(); "
        "print(default[2], gc.get_threshold()[2], gc.get_freeze_count(), IdleGC.for_process() is not None)"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    default, settled, frozen, collects_when_idle = result.stdout.split()
    assert (int(default), int(settled)) == (10, 100)
    assert int(frozen) > 100_000  # the imported libraries, at least
    assert collects_when_idle == "True"


def test_a_process_that_never_settled_has_no_idle_collector() -> None:
    assert IdleGC.for_process() is None  # this test process never settled its heap


async def test_a_full_collection_runs_once_the_service_has_been_idle() -> None:
    full: list[int] = []

    def watch(phase: str, info: dict[str, int]) -> None:
        if phase == "stop" and info["generation"] == 2:
            full.append(1)

    gc.callbacks.append(watch)
    gc.disable()  # only the collector's own collection may run meanwhile
    collector = IdleGC(delay=0.01)
    try:
        collector.idle()  # idle, but nothing ran since the last collection: nothing to do
        await asyncio.sleep(0.05)
        assert full == []
        collector.busy()
        collector.idle()
        collector.busy()  # busy again before the delay: put off once more
        await asyncio.sleep(0.05)
        assert full == []
        collector.idle()
        await until(lambda: full, message="the full collection")
        assert len(full) == 1
    finally:
        collector.close()
        gc.enable()
        gc.callbacks.remove(watch)
