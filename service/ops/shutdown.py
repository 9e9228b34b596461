"""Graceful shutdown: on SIGTERM, stop admitting, let streams finish, end the rest cleanly, then exit.

uvicorn's own SIGTERM handling stops listening at once (a request a load balancer still routes
here gets a refused connection, not a 503), waits for open connections, and after
`timeout_graceful_shutdown` cancels them mid-write; the lifespan's shutdown only runs after all
that. So the app takes the signal first, and passes it on to the server once the drain is over:

1. `/readyz` and new streams answer 503 (`Retry-After`), while the listener stays open;
2. running streams get up to `shutdown_grace` seconds to finish;
3. the rest end with a retryable `shutting_down` error event (whole frames: the collector sends
   it, the response then ends normally), and their upstream work is cancelled;
4. the signal goes on to the server's handler, which closes the listener and the idle
   connections and runs the lifespan's teardown.

The drain ends early once no stream is left. A second signal ends the remaining streams at once.
A watchdog bounds the whole: a worker thread that cannot be woken (one sleeping in the OpenAI
SDK's wait between retries, see docs/failures.md) would hold the interpreter's exit, so the process exits
`EXIT_MARGIN` after the grace whatever is still blocked. The hook goes in front of the handler a
server installed (uvicorn's, in the main thread); without one (a server in another thread, an app
under a test client) it stays out of the way and the app is stopped the ordinary way.

Only SIGTERM drains. SIGINT (Ctrl+C) keeps uvicorn's quick stop, as gunicorn has it (TERM is
graceful, INT is quick): it is what a developer at a terminal means, and hooking it would also
catch the handler `asyncio.run` installs, outside any server.
"""

import asyncio
import contextlib
import contextvars
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from service.errors import ShuttingDown
from service.serving import Serving

logger = logging.getLogger("service.ops.shutdown")

WRAP_UP = 0.5  # seconds for ended streams to send their error event and free their threads
EXIT_MARGIN = 0.8  # the watchdog ends the process this long after the grace

Handler = Callable[[int, FrameType | None], Any]


class Drain:
    """Stop admitting, wait for the running streams up to the grace, then end the rest with an error."""

    def __init__(self, state: Serving, grace: float) -> None:
        self.state = state
        self.grace = grace

    async def run(self) -> None:
        admission = self.state.admission
        self.state.draining = True
        logger.info("draining", extra={"active_streams": admission.active, "grace_s": self.grace})
        if not await admission.wait_idle(self.grace):
            self.end_streams()
            await admission.wait_idle(WRAP_UP)
        logger.info("drained", extra={"active_streams": admission.active})

    def end_streams(self) -> None:
        ended = self.state.admission.fail_all(ShuttingDown())
        if ended:
            logger.warning("ending streams still running at shutdown", extra={"streams": ended})


@contextlib.contextmanager
def drain_on_signals(state: Serving, grace: float) -> Iterator[None]:
    """While the app runs, SIGTERM drains it first, then goes on to the server's handler."""
    server_handler = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
    if not callable(server_handler):  # SIG_DFL, or not the main thread: no server is listening for it
        yield
        return
    handler = _SignalDrain(asyncio.get_running_loop(), Drain(state, grace), server_handler)
    signal.signal(signal.SIGTERM, handler.on_signal)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, server_handler)
        handler.stop()


class _SignalDrain:
    def __init__(self, loop: asyncio.AbstractEventLoop, drain: Drain, server_handler: Handler) -> None:
        self.loop = loop
        self.drain = drain
        self.server_handler = server_handler
        self.task: asyncio.Task[None] | None = None

    def on_signal(self, sig: int, frame: FrameType | None) -> None:
        """Runs in the main thread between two bytecodes: hand the work to the loop, nothing more.

        In a fresh context: the interrupted code's (a run's id, say) must not follow the drain.
        """
        self.loop.call_soon_threadsafe(self._on_loop, sig, context=contextvars.Context())

    def _on_loop(self, sig: int) -> None:
        if self.task is None:
            logger.info("received %s: draining; a second one ends the streams now", signal.Signals(sig).name)
            self.task = self.loop.create_task(self._drain_then_pass_on(sig), name="drain")
            _start_watchdog(self.drain.grace + EXIT_MARGIN, self.drain.state)
        elif not self.task.done():
            self.drain.end_streams()  # a second signal: do not wait for the grace
        else:
            self._pass_on(sig)  # already handed over: the server decides

    async def _drain_then_pass_on(self, sig: int) -> None:
        try:
            await self.drain.run()
        except Exception:
            logger.exception("draining failed; shutting down anyway")
        self._pass_on(sig)

    def _pass_on(self, sig: int) -> None:
        self.server_handler(sig, None)  # uvicorn's: stop listening, close the connections, run the teardown

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()


def _start_watchdog(seconds: float, state: Serving) -> None:
    timer = threading.Timer(seconds, _exit_now, args=(seconds, state))
    timer.name = "shutdown-watchdog"
    timer.daemon = True
    timer.start()


def _exit_now(seconds: float, state: Serving) -> None:
    """Threads still blocked (on an upstream that never answered) would hold the exit: leave without them."""
    extra = {"busy_threads": state.threads.busy}
    logger.error("still running %.1f s after the shutdown signal; exiting now", seconds, extra=extra)
    logging.shutdown()
    os._exit(0)
