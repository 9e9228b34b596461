"""The send timeout, with a hand-written ASGI `send`: stuck sends are dropped, slow or idle streams are not."""

import asyncio
from collections.abc import AsyncGenerator

from starlette.types import Message

from service.http.responses import EventStreamResponse
from service.http.send_watchdog import CHECKS

TIMEOUT = 0.2


async def events(count: int, gap: float = 0.0, closed: list[bool] | None = None) -> AsyncGenerator[bytes, None]:
    try:
        for n in range(count):
            if gap:
                await asyncio.sleep(gap)
            yield b"data: %d\n\n" % n
    finally:
        if closed is not None:
            closed.append(True)


async def never_disconnects() -> Message:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def serve(response: EventStreamResponse, send_delay: float, stuck_after: int | None = None) -> list[Message]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        if stuck_after is not None and len(sent) >= stuck_after:
            await asyncio.Event().wait()  # a reader that never reads again
        await asyncio.sleep(send_delay)
        sent.append(message)

    await asyncio.wait_for(response({"type": "http"}, never_disconnects, send), 10)
    return sent


async def test_a_send_stuck_for_the_timeout_ends_the_response_and_closes_the_run() -> None:
    closed: list[str] = []
    body_closed: list[bool] = []
    body = events(100, closed=body_closed)
    response = EventStreamResponse(body, on_close=lambda: closed.append("closed"), send_timeout=TIMEOUT)
    loop = asyncio.get_running_loop()
    began = loop.time()
    sent = await serve(response, 0.0, stuck_after=3)
    took = loop.time() - began
    assert len(sent) == 3 and closed == ["closed"]
    assert TIMEOUT <= took < TIMEOUT * (1 + 1 / CHECKS) + 1.0, took
    assert body_closed == [True], "the body iterator was not closed"


async def test_slow_sends_that_progress_are_never_dropped() -> None:
    response = EventStreamResponse(events(8), on_close=lambda: None, send_timeout=TIMEOUT)
    sent = await serve(response, send_delay=TIMEOUT * 0.4)  # each send slow, but every one completes
    assert len(sent) == 1 + 8 + 1 and sent[-1]["more_body"] is False


async def test_an_idle_stream_waiting_for_the_upstream_is_never_dropped() -> None:
    response = EventStreamResponse(events(3, gap=TIMEOUT * 2), on_close=lambda: None, send_timeout=TIMEOUT)
    sent = await serve(response, send_delay=0.0)
    assert len(sent) == 1 + 3 + 1


async def test_without_a_send_timeout_nothing_is_watched() -> None:
    response = EventStreamResponse(events(2), on_close=lambda: None)
    with_no_timeout = asyncio.ensure_future(serve(response, 0.0, stuck_after=2))
    done, _ = await asyncio.wait({with_no_timeout}, timeout=TIMEOUT * 3)
    assert not done, "a response with no send timeout was dropped"
    with_no_timeout.cancel()
    await asyncio.gather(with_no_timeout, return_exceptions=True)
