"""The worker-thread -> event-loop hand-off: order, backpressure, and cancellation."""

import asyncio
import threading

import pytest

from service.bridge import StreamBridge
from service.errors import RunCancelled


async def _until(condition: object, deadline: float = 5.0) -> None:
    async with asyncio.timeout(deadline):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.001)


async def test_chunks_arrive_in_order() -> None:
    queue: asyncio.Queue[object] = asyncio.Queue(maxsize=4)
    bridge = StreamBridge(asyncio.get_running_loop(), queue)

    def produce() -> None:
        for n in range(50):
            bridge(n)

    task = asyncio.ensure_future(asyncio.to_thread(produce))
    received = [await queue.get() for _ in range(50)]
    await task
    assert received == list(range(50))


async def test_a_full_queue_holds_the_producer_back() -> None:
    queue: asyncio.Queue[object] = asyncio.Queue(maxsize=2)
    bridge = StreamBridge(asyncio.get_running_loop(), queue)
    returned: list[int] = []

    def produce() -> None:
        for n in range(5):
            bridge(n)
            returned.append(n)

    task = asyncio.ensure_future(asyncio.to_thread(produce))
    await _until(queue.full)
    assert len(returned) <= 2, "the producer ran ahead of a full queue"
    received = [await queue.get() for _ in range(5)]
    await task
    assert received == [0, 1, 2, 3, 4]


async def test_cancel_wakes_a_blocked_producer_and_refuses_more() -> None:
    queue: asyncio.Queue[object] = asyncio.Queue(maxsize=1)
    bridge = StreamBridge(asyncio.get_running_loop(), queue)
    outcome: list[BaseException] = []
    blocked = threading.Event()

    def produce() -> None:
        bridge("first")
        blocked.set()
        try:
            bridge("second")  # the queue is full: this waits for a reader that never comes
        except RunCancelled as error:
            outcome.append(error)

    task = asyncio.ensure_future(asyncio.to_thread(produce))
    await _until(blocked.is_set)
    await _until(lambda: bridge._pending is not None)
    bridge.cancel()
    await asyncio.wait_for(task, 5)
    assert len(outcome) == 1
    with pytest.raises(RunCancelled):
        await asyncio.to_thread(bridge, "third")


async def test_a_closed_loop_is_treated_as_cancelled() -> None:
    loop = asyncio.new_event_loop()
    queue: asyncio.Queue[object] = asyncio.Queue()
    bridge = StreamBridge(loop, queue)
    loop.close()
    with pytest.raises(RunCancelled):
        await asyncio.to_thread(bridge, "x")
