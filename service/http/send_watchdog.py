"""`SendWatchdog`: drop a client that stopped reading, without any per-event timer.

A reader that stops reading but keeps its connection open blocks the response's `send` once the
socket buffers are full; the bounded queue then holds the producer back, so memory stays bounded,
but the run would hold its thread, its upstream connection and its admission slot forever. The
watchdog ends such a stream after `timeout` seconds without progress.

The response marks each send (`sending`, `sent`: two stores per event, nothing scheduled); one
timer per response looks every `timeout / CHECKS` seconds. The stream is dropped once the same
send has been seen pending for more than `CHECKS` looks in a row, so after between `timeout` and
`timeout * (1 + 1 / CHECKS)` seconds of no progress. An idle stream (waiting for the upstream)
is never dropped: no send is pending then.
"""

import asyncio
import logging
from collections.abc import Callable

logger = logging.getLogger("service.http.send_watchdog")

CHECKS = 4


class SendWatchdog:
    def __init__(self, timeout: float | None, on_stall: Callable[[], object]) -> None:
        self.sending = False  # a send is in progress
        self.sent = 0  # sends completed
        self._timeout = timeout
        self._on_stall = on_stall
        self._seen = 0
        self._pending_looks = 0
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        if self._timeout is not None:
            self._schedule()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule(self) -> None:
        assert self._timeout is not None
        self._timer = asyncio.get_running_loop().call_later(self._timeout / CHECKS, self._look)

    def _look(self) -> None:
        if not self.sending:
            self._pending_looks = 0
        elif self.sent != self._seen:
            self._pending_looks = 1  # a send that began since the last look
        else:
            self._pending_looks += 1
        self._seen = self.sent
        if self._pending_looks > CHECKS:
            self._timer = None
            logger.warning("client stopped reading; dropping the stream", extra={"send_timeout": self._timeout})
            self._on_stall()
        else:
            self._schedule()
