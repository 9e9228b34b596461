"""Waiting for a condition with a deadline, never a bare sleep."""

import asyncio
import time
from collections.abc import Callable


def _wait(condition: Callable[[], object], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def wait_until(condition: Callable[[], object], timeout: float = 5.0, message: str = "condition") -> None:
    """Poll with a deadline; the failure says what was awaited."""
    if not _wait(condition, timeout):
        raise AssertionError(f"timed out waiting for {message}")


async def until(condition: Callable[[], object], within: float = 5.0, message: str = "condition") -> None:
    """`wait_until` for a coroutine: polls without blocking the event loop."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        await asyncio.sleep(0.01)
