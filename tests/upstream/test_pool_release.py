"""A run that stops reading gives its upstream response back at once, not when garbage is collected."""

import asyncio
import concurrent.futures
import gc
import threading
from collections.abc import Iterator

import httpx
import openai
import pytest

from service.demo_model import Behaviour, DemoModelServer
from service.errors import RunCancelled, UpstreamCancelled
from service.streaming.bridge import StreamBridge
from service.upstream.pool import UpstreamPool
from tests.conftest import LiveFactory
from tests.support.sse import parse_sse
from tests.support.streams import LiveStream
from tests.support.waiting import until, wait_until

BODY = {"query": "a long answer, please", "api_key": "sk-release-test"}
_STREAM_REQUEST = {"model": "demo", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def no_cyclic_gc() -> Iterator[None]:
    """Only reference counting: anything left for the cyclic collector stays visible."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.mark.usefixtures("no_cyclic_gc")
def test_a_client_leaving_closes_the_upstream_response_without_the_garbage_collector(
    live_service: LiveFactory, upstream_server: DemoModelServer
) -> None:
    """Regression: the SDK's abandoned stream generator closed the response from a GC finalizer.

    The finalizer could run on a thread holding the shared connection pool's (non-reentrant) lock,
    which then waited for itself, and every other run waited behind it: the soak run deadlocked.
    """
    service = live_service(queue_size=4)
    upstream = service.state.admission.upstream
    for token_delay in (0.01, 0.0):  # a paced producer, and one blocked on the full queue
        upstream_server.behaviour = Behaviour(tokens=2000, first_token_delay=0, token_delay=token_delay)
        for _ in range(3):
            with LiveStream(service.client, BODY) as stream:
                assert [e.event for e in (stream.next_event(), stream.next_event()) if e] == ["metadata", "data"]
                assert upstream.open_responses == 1
            wait_until(lambda: service.state.admission.active == 0, message="the run to be released")
            assert upstream.open_responses == 0, f"a response waits for the garbage collector ({token_delay=})"


@pytest.mark.usefixtures("no_cyclic_gc")
def test_completed_and_failed_runs_close_their_upstream_responses(
    live_service: LiveFactory, upstream_server: DemoModelServer
) -> None:
    service = live_service()
    upstream = service.state.admission.upstream
    for behaviour in (
        Behaviour(tokens=5, first_token_delay=0, token_delay=0),
        Behaviour(tokens=9, fault="malformed", fault_after=3, first_token_delay=0, token_delay=0),
        Behaviour(tokens=9, fault="close_mid", fault_after=3, first_token_delay=0, token_delay=0),
        Behaviour(fault="http_500"),
    ):
        upstream_server.behaviour = behaviour
        last = parse_sse(service.client.post("/chat", json=BODY).text).events[-1]
        assert last.event in ("end", "error")
        wait_until(lambda: service.state.admission.active == 0, message="the run to be released")
        assert upstream.open_responses == 0, behaviour


async def test_a_refused_chunk_has_the_response_released_first_on_the_worker_thread() -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue(maxsize=1)  # nobody reads it
    released: list[str] = []
    bridge = StreamBridge(
        loop, queue, max_pending=1, on_refuse=lambda: released.append(threading.current_thread().name)
    )
    await asyncio.to_thread(bridge, "fills the queue")
    await asyncio.to_thread(bridge, "waits in the hand-off")
    blocked = asyncio.ensure_future(asyncio.to_thread(bridge, "holds the producer back"))
    await until(lambda: bridge._waiting, message="the producer to wait behind the hand-off")
    bridge.cancel()
    with pytest.raises(RunCancelled):
        await blocked
    with pytest.raises(RunCancelled):
        await asyncio.to_thread(bridge, "refused at once")
    assert len(released) == 2
    assert threading.current_thread().name not in released


def test_a_cancelled_runs_request_fails_as_cancelled_so_the_sdk_neither_waits_nor_retries(
    upstream_server: DemoModelServer,
) -> None:
    """Cut before its headers, then asked again (a retry): both `UpstreamCancelled`, which the SDK passes on."""
    upstream_server.behaviour = Behaviour(fault="stall_before_headers", stall=120)
    pool = UpstreamPool(max_connections=2)
    transport = pool.transport_for_run()
    request = httpx.Request("POST", f"{upstream_server.base_url}/chat/completions", json=_STREAM_REQUEST)
    with concurrent.futures.ThreadPoolExecutor(1) as threads:
        pending = threads.submit(transport.handle_request, request)
        upstream_server.wait_for_requests(1)
        transport.abort()
        with pytest.raises(UpstreamCancelled):
            pending.result(timeout=5)  # woken by the cut, long before the stall ends
    with pytest.raises(UpstreamCancelled):
        transport.handle_request(request)
    assert isinstance(UpstreamCancelled(), openai.OpenAIError) and len(upstream_server.requests) == 1
    pool.close()
