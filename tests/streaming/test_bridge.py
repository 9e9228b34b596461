"""The worker-thread -> event-loop hand-off: order, coalescing, backpressure, and cancellation."""

import asyncio
import threading

import pytest

from service.errors import RunCancelled
from service.streaming.bridge import StreamBridge
from tests.support.waiting import until


def _bridge(maxsize: int = 1, max_pending: int = 64) -> tuple[StreamBridge, "asyncio.Queue[list[object]]"]:
    queue: asyncio.Queue[list[object]] = asyncio.Queue(maxsize=maxsize)
    return StreamBridge(asyncio.get_running_loop(), queue, max_pending), queue


async def _drain(queue: "asyncio.Queue[list[object]]", count: int) -> list[object]:
    items: list[object] = []
    while len(items) < count:
        items += await queue.get()
    return items


async def test_chunks_arrive_in_order_including_those_left_for_flush() -> None:
    bridge, queue = _bridge()

    def produce() -> None:
        for n in range(500):
            bridge(n)

    async def run() -> None:
        await asyncio.to_thread(produce)
        await bridge.flush()

    task = asyncio.ensure_future(run())
    assert await _drain(queue, 500) == list(range(500))
    await task
    assert queue.empty()


async def test_the_first_chunk_goes_alone_and_at_once() -> None:
    bridge, queue = _bridge()
    await asyncio.to_thread(bridge, "first")
    assert await asyncio.wait_for(queue.get(), 5) == ["first"]


async def test_chunks_waiting_behind_a_hand_off_go_together() -> None:
    bridge, queue = _bridge(maxsize=1)

    def produce() -> None:
        bridge(1)  # handed off, but the queue is full: in flight
        bridge(2)  # rides with the next hand-off
        bridge(3)

    await asyncio.to_thread(bridge, 0)
    # The loop has taken the first hand-off: the queue now holds [0].
    await until(queue.full, message="the queue to fill")
    await asyncio.to_thread(produce)
    flush = asyncio.ensure_future(bridge.flush())
    batches: list[list[object]] = []
    while sum(map(len, batches)) < 4:
        batches.append(await queue.get())
    await flush
    assert batches[0] == [0]
    assert [chunk for batch in batches for chunk in batch] == [0, 1, 2, 3]
    # 1 may or may not have left alone (that depends on when the loop marked the first hand-off done),
    # but 2 and 3 came while a hand-off was in flight, so they travel together.
    assert [2, 3] in batches or [1, 2, 3] in batches


async def test_a_reader_that_falls_behind_holds_the_producer_back() -> None:
    bridge, queue = _bridge(maxsize=1, max_pending=3)
    returned: list[int] = []

    def produce() -> None:
        for n in range(30):
            bridge(n)
            returned.append(n)

    async def run() -> None:
        await asyncio.to_thread(produce)
        await bridge.flush()

    task = asyncio.ensure_future(run())
    await until(lambda: len(returned) >= 4, message="four chunks handed over")
    await asyncio.sleep(0.05)  # room for a runaway producer to show itself; not a synchronisation point
    # At most one batch queued and one in flight (each up to max_pending) and max_pending - 1 waiting.
    assert len(returned) <= 3 + 3 + 2, returned
    assert await _drain(queue, 30) == list(range(30))
    await task


async def test_cancel_wakes_a_blocked_producer_and_refuses_more() -> None:
    bridge, queue = _bridge(maxsize=1, max_pending=1)
    outcome: list[BaseException] = []
    first_done = threading.Event()

    def produce() -> None:
        bridge("first")
        first_done.set()
        try:
            bridge("second")  # in flight behind a full queue: nobody will read it
            bridge("third")  # max_pending reached: waits for the hand-off in flight
        except RunCancelled as error:
            outcome.append(error)

    task = asyncio.ensure_future(asyncio.to_thread(produce))
    await until(first_done.is_set, message="the first chunk handed over")
    await until(queue.full, message="the queue to fill")
    bridge.cancel()
    await asyncio.wait_for(task, 5)
    assert len(outcome) == 1
    with pytest.raises(RunCancelled):
        await asyncio.to_thread(bridge, "fourth")


async def test_a_closed_loop_is_treated_as_cancelled() -> None:
    loop = asyncio.new_event_loop()
    queue: asyncio.Queue[object] = asyncio.Queue()
    bridge = StreamBridge(loop, queue, max_pending=8)
    loop.close()
    with pytest.raises(RunCancelled):
        await asyncio.to_thread(bridge, "x")


async def test_a_waiting_chunk_goes_as_soon_as_the_hand_off_is_free() -> None:
    """Regression: a chunk that came behind an in-flight hand-off waited for the next chunk to arrive,
    so a stalled or slow upstream held back text the client should already have had."""
    bridge, queue = _bridge(maxsize=1)
    await asyncio.to_thread(bridge, 0)
    await until(queue.full, message="the queue to fill")
    await asyncio.to_thread(bridge, 1)  # in flight behind the full queue
    await asyncio.to_thread(bridge, 2)  # waits behind it; no chunk comes after, and no flush
    received: list[object] = []
    while len(received) < 3:
        received += await asyncio.wait_for(queue.get(), 5)
    assert received == [0, 1, 2]
