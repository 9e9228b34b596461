"""Graceful shutdown: stop admitting, let streams finish within the grace, end the rest cleanly, exit 0.

The drain is exercised twice: in-process (`Drain.run` on a live server's loop, fast), and through
the real path, a `python -m service` process sent SIGTERM while it streams from the test's
`DemoModelServer`. Exit times are asserted with a deadline on `wait()`.
"""

import asyncio
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from service.app import create_app
from service.demo_model import Behaviour, DemoModelServer, expected_text
from service.ops import shutdown
from service.ops.shutdown import Drain
from tests.conftest import LiveFactory, LiveService, SettingsFactory
from tests.support.servers import ServiceProcess, run_service_process
from tests.support.sse import SSEEvent, text_of
from tests.support.streams import LiveStream
from tests.support.waiting import wait_until

KEY = "sk-shutdown-SENTINEL-91c2"
LONG = Behaviour(tokens=5000, first_token_delay=0, token_delay=0.02)  # 100 s: never fits a grace
SHORT = Behaviour(tokens=30, first_token_delay=0, token_delay=0.03)  # about 1 s


def body(query: str = "Will this finish?") -> dict[str, str]:
    return {"query": query, "api_key": KEY}


def start_stream(client: httpx.Client, upstream: DemoModelServer, behaviour: Behaviour, query: str) -> LiveStream:
    """A stream that has sent its metadata and first chunk, so it is surely in flight."""
    upstream.behaviour = behaviour
    stream = LiveStream(client, body(query))
    events = [stream.next_event(), stream.next_event()]
    assert [e.event for e in events if e] == ["metadata", "data"]
    return stream


def assert_ended_for_shutdown(stream: LiveStream) -> None:
    events = stream.rest()
    assert {e.event for e in events[:-1]} <= {"data"}, [e.event for e in events]
    assert events[-1].event == "error"
    assert events[-1].json() == {
        "type": "shutting_down",
        "message": "The service is restarting; send the request again.",
        "retryable": True,
    }
    assert stream.parser.complete, "the stream ended mid-frame"
    ids = [int((e.id or ":-1").rpartition(":")[2]) for e in stream.parser.events]
    assert ids == sorted(set(ids))


def assert_completed(stream: LiveStream, query: str) -> None:
    stream.rest()
    events = stream.parser.events  # all of them, those read before included
    assert events[-1].event == "end"
    assert text_of(events) == expected_text(query, SHORT)


def assert_refused_while_draining(url: str) -> None:
    """A new connection is still accepted, and told to come back: 503, the capacity 503's shape."""
    ready = httpx.get(f"{url}/readyz")
    assert ready.status_code == 503 and ready.json()["status"] == "draining"
    refused = httpx.post(f"{url}/chat", json=body())
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert refused.json() == {
        "type": "shutting_down",
        "message": "The service is shutting down; retry shortly.",
        "retryable": True,
    }


# In-process: the drain itself.


def server_loop(service: LiveService) -> asyncio.AbstractEventLoop:
    """The live server's event loop, found through a running stream's task."""
    run = next(iter(service.state.admission.runs.values()))
    assert run.task is not None
    return run.task.get_loop()


def test_the_drain_lets_a_short_stream_finish_and_ends_a_long_one(
    live_service: LiveFactory, upstream_server: DemoModelServer
) -> None:
    service = live_service()
    long = start_stream(service.client, upstream_server, LONG, "long")
    (long_upstream,) = upstream_server.wait_for_requests(1)
    short = start_stream(service.client, upstream_server, SHORT, "short")
    started = time.monotonic()
    drained = asyncio.run_coroutine_threadsafe(Drain(service.state, grace=2.0).run(), server_loop(service))
    wait_until(lambda: service.state.draining, message="the drain to begin")
    assert_refused_while_draining(service.url)
    assert_completed(short, "short")
    assert_ended_for_shutdown(long)
    assert time.monotonic() - started >= 2.0 - 0.1, "the long stream was ended before the grace was over"
    drained.result(10)
    assert long_upstream.closed.wait(5) and not long_upstream.completed, "the upstream kept streaming"
    wait_until(lambda: service.state.threads.busy == 0, message="the worker threads to be freed")
    assert service.state.admission.active == 0


def test_the_drain_ends_as_soon_as_the_streams_are_done(
    live_service: LiveFactory, upstream_server: DemoModelServer
) -> None:
    service = live_service()
    short = start_stream(service.client, upstream_server, SHORT, "short")
    # Done within half the grace: it waited for the stream, not for the grace.
    asyncio.run_coroutine_threadsafe(Drain(service.state, grace=60).run(), server_loop(service)).result(30)
    assert_completed(short, "short")


def test_the_draining_503_has_the_capacity_503s_shape(
    live_service: LiveFactory, upstream_server: DemoModelServer
) -> None:
    upstream_server.behaviour = Behaviour(first_token_delay=60)
    service = live_service(max_streams=1, retry_after=7)
    with LiveStream(service.client, body()) as held:
        assert (event := held.next_event()) is not None and event.event == "metadata"
        full = service.client.post("/chat", json=body())
        service.state.draining = True
        draining = service.client.post("/chat", json=body())
    assert full.status_code == draining.status_code == 503
    assert full.headers["retry-after"] == draining.headers["retry-after"] == "7"
    assert full.json().keys() == draining.json().keys() == {"type", "message", "retryable"}
    assert (full.json()["type"], draining.json()["type"]) == ("at_capacity", "shutting_down")
    assert full.json()["retryable"] is draining.json()["retryable"] is True


async def test_the_signal_hook_goes_in_front_of_the_servers_handler_and_hands_over(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a real signal: the handler is called directly, and the watchdog is held off."""
    watchdogs: list[float] = []
    monkeypatch.setattr(shutdown, "_start_watchdog", lambda seconds, _: watchdogs.append(seconds))
    handed_over = asyncio.Event()
    before = signal.signal(signal.SIGTERM, lambda *_: handed_over.set())  # stands in for uvicorn's
    try:
        server_handler = signal.getsignal(signal.SIGTERM)
        app = create_app(make_settings(shutdown_grace=5))
        async with app.router.lifespan_context(app):
            ours = signal.getsignal(signal.SIGTERM)
            assert callable(ours) and ours is not server_handler
            ours(signal.SIGTERM, None)
            await asyncio.wait_for(handed_over.wait(), 5)  # nothing was streaming: handed over at once
            assert app.state.serving.draining
        assert watchdogs == [5 + shutdown.EXIT_MARGIN]
        assert signal.getsignal(signal.SIGTERM) is server_handler, "the server's handler was not put back"
    finally:
        signal.signal(signal.SIGTERM, before)


async def test_without_a_server_handler_the_signals_are_left_alone(make_settings: SettingsFactory) -> None:
    """Under pytest SIGTERM has its default action, and SIGINT asyncio.run's handler: neither is touched."""
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    app = create_app(make_settings())
    async with app.router.lifespan_context(app):
        assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


# The real thing: a service process and SIGTERM.


ProcessFactory = Callable[..., ServiceProcess]


@pytest.fixture
def service_process(upstream_server: DemoModelServer, tmp_path: Path) -> Iterator[ProcessFactory]:
    """Each test stops its process with SIGTERM itself; one still running at the end is killed."""
    with ExitStack() as stack:

        def start(**settings: str) -> ServiceProcess:
            env = {"HAYSTREAM_BASE_URL": upstream_server.base_url, "HAYSTREAM_MODEL": "demo"}
            env |= {f"HAYSTREAM_{name.upper()}": value for name, value in settings.items()}
            return stack.enter_context(run_service_process(env=env, log_dir=tmp_path, kill_on_exit=True))

        yield start


def test_sigterm_drains_then_exits_cleanly(service_process: ProcessFactory, upstream_server: DemoModelServer) -> None:
    grace = 3.0
    service = service_process(shutdown_grace=str(grace))
    with httpx.Client(base_url=service.url, timeout=30) as client:
        long = start_stream(client, upstream_server, LONG, "long")
        (long_upstream,) = upstream_server.wait_for_requests(1)
        short = start_stream(client, upstream_server, SHORT, "short")
        sent = service.terminate()
        wait_until(lambda: httpx.get(f"{service.url}/readyz").status_code == 503, message="readyz to say draining")
        assert_refused_while_draining(service.url)
        assert_completed(short, "short")
        assert_ended_for_shutdown(long)
        assert time.monotonic() - sent >= grace - 0.1, "the long stream was ended before the grace was over"
        assert service.exit_code_by(sent + grace + 10) == 0  # slack: the exit is asserted, not its timing
    assert long_upstream.closed.wait(5) and not long_upstream.completed, "the upstream kept streaming"
    log = service.log.read_text()
    assert "outcome=error:shutting_down" in log and "outcome=completed" in log
    assert "Traceback" not in log and KEY not in log


def test_sigterm_exits_as_soon_as_the_running_streams_are_done(
    service_process: ProcessFactory, upstream_server: DemoModelServer
) -> None:
    service = service_process(shutdown_grace="60")
    with httpx.Client(base_url=service.url, timeout=30) as client:
        short = start_stream(client, upstream_server, SHORT, "short")
        sent = service.terminate()
        assert_completed(short, "short")
    assert service.exit_code_by(sent + 15) == 0  # far less than the grace: it only waited for the stream


def test_a_second_sigterm_ends_the_streams_at_once(
    service_process: ProcessFactory, upstream_server: DemoModelServer
) -> None:
    service = service_process(shutdown_grace="60")
    with httpx.Client(base_url=service.url, timeout=30) as client:
        long = start_stream(client, upstream_server, LONG, "long")
        service.terminate()
        wait_until(lambda: httpx.get(f"{service.url}/readyz").status_code == 503, message="readyz to say draining")
        sent = service.terminate()
        assert_ended_for_shutdown(long)
    assert service.exit_code_by(sent + 15) == 0


def _end_after_the_grace(service_process: ProcessFactory, upstream: DemoModelServer, **settings: str) -> str:
    """A stream whose upstream holds its thread, SIGTERM, the grace (1 s) over: the exit code, then the log."""
    grace = 1.0
    service = service_process(shutdown_grace=str(grace), upstream_timeout="120", **settings)
    with httpx.Client(base_url=service.url, timeout=30) as client, LiveStream(client, body()) as stream:
        first = stream.next_event()
        assert first is not None and first.event == "metadata"
        upstream.wait_for_requests(1)
        sent = service.terminate()
        events: list[SSEEvent] = stream.rest()
        assert [e.event for e in events] == ["error"] and events[0].json()["type"] == "shutting_down"
        assert service.exit_code_by(sent + grace + 10) == 0  # slack: the exit is asserted, not its timing
    return service.log.read_text()


def test_a_thread_waiting_on_a_silent_upstream_is_woken_by_the_drain(
    service_process: ProcessFactory, upstream_server: DemoModelServer
) -> None:
    """No response headers yet: the cancel shuts the socket down, the SDK does not retry, the thread is free."""
    upstream_server.behaviour = Behaviour(fault="stall_before_headers", stall=120)
    log = _end_after_the_grace(service_process, upstream_server)
    assert "exiting now" not in log  # the watchdog was not needed
    record = upstream_server.requests[0]
    assert record.closed.wait(5) and record.client_gone
    assert len(upstream_server.requests) == 1  # no retry of the cut request


def test_a_thread_that_cannot_be_woken_does_not_hold_the_exit(
    service_process: ProcessFactory, upstream_server: DemoModelServer
) -> None:
    """The SDK sleeping out a 30 s Retry-After cannot be interrupted; the watchdog exits anyway."""
    upstream_server.behaviour = Behaviour(fault="http_429", retry_after=30)
    log = _end_after_the_grace(service_process, upstream_server, upstream_max_retries="1")
    assert "exiting now" in log
