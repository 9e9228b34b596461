"""`EventLog` on its own: ids, replay from any point, the bounds, and waking readers."""

import asyncio

from service.streaming.event_log import EventLog
from service.streaming.sse import KEEPALIVE_FRAME, Event, encode


def frame(run_id: str, n: int) -> bytes:
    return encode(Event("data", f'"t{n}"', f"{run_id}:{n}"))


async def take(log: EventLog, position: int, count: int) -> bytes:
    frames = log.frames(position)
    out = b""
    while out.count(b"\n\n") < count:
        out += await anext(frames)
    await frames.aclose()
    return out


async def test_frames_are_encoded_once_with_run_scoped_ids_and_replayed_from_any_point() -> None:
    log = EventLog("run_a", max_events=100, max_bytes=1 << 20, window=1000)
    for n in range(5):
        log.append(Event("data", f'"t{n}"'))
    assert await take(log, 0, 5) == b"".join(frame("run_a", n) for n in range(5))
    assert await take(log, log.parse_id("run_a:2"), 2) == frame("run_a", 3) + frame("run_a", 4)
    for wrong in ("run_b:2", "run_a:5", "run_a:x", "2"):
        try:
            log.parse_id(wrong)
        except ValueError:
            continue
        raise AssertionError(f"{wrong} was accepted")


async def test_only_frames_a_reader_took_are_dropped_and_the_list_is_compacted() -> None:
    log = EventLog("run_a", max_events=10, max_bytes=1 << 20, window=100_000)
    for n in range(50):
        log.append(Event("data", f'"t{n}"'))
    assert log.first_held() == 0, "nothing was read yet: nothing may be dropped"
    await take(log, 0, 50)
    for n in range(50, 5000):
        log.append(Event("data", f'"t{n}"'))
        log.read_to = log.next_seq
    assert log.first_held() == 4990
    assert await take(log, 4990, 10) == b"".join(frame("run_a", n) for n in range(4990, 5000))
    assert len(log._frames) < 2 * 1024 + 10, "dropped frames were never deleted"


async def test_a_waiting_reader_is_woken_by_an_append_a_keepalive_and_the_close() -> None:
    log = EventLog("run_a", max_events=10, max_bytes=1 << 20, window=10)
    frames = log.frames(0)
    pending = asyncio.ensure_future(anext(frames))
    await asyncio.sleep(0)
    log.keepalive()
    assert await pending == KEEPALIVE_FRAME
    pending = asyncio.ensure_future(anext(frames))
    await asyncio.sleep(0)
    log.append(Event("metadata", "{}"))
    assert (await pending).startswith(b"id: run_a:0\n")
    log.close()
    assert [chunk async for chunk in frames] == []
