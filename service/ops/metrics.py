"""Prometheus metrics: what runs did (counted once, when each ends) and what the process holds now.

Decisions worth knowing:

- One `CollectorRegistry` per app, made by the lifespan, never prometheus-client's global one: two
  apps in one process (the tests, or an embedding) each count their own runs.
- Nothing is recorded per chunk. `Run.close` reports a run once, at its end (outcome, chunk count,
  time to first token, duration); admission reports each 503. Live values (active streams, busy
  pool threads, asyncio tasks, threads) are read by callbacks at scrape time.
- Labels come only from fixed enums (`Outcome`, `ErrorType`), every combination created up front,
  so a series never carries request text and the set of series never grows.
- Several uvicorn workers are several processes with their own counters, and a scrape reaches
  whichever worker accepts it. prometheus-client's multiprocess mode sums counters and histograms
  across workers: `python -m service --workers N` (N > 1) turns it on by itself, in a private
  directory it removes on exit, unless `PROMETHEUS_MULTIPROC_DIR` names one (an empty directory, the
  same for every worker, wiped at start). The live gauges are then copied into `livesum` gauges once
  a second by each worker, and the `process_*`/`python_*` collectors, which can only describe the
  process that answers, are left out.
"""

import asyncio
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Literal, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    multiprocess,
    values,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from service.errors import ErrorType, Refusal
from service.ops.loop_lag import Lag

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
MIRROR_INTERVAL = 1.0  # seconds between copies of the live gauges, in multiprocess mode only

# LLM streams: a first token takes from tens of milliseconds (a warm local model) to tens of
# seconds (a long prompt on a loaded upstream); a whole answer from a second to several minutes.
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 20.0, 30.0, 60.0)
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class Outcome(StrEnum):
    COMPLETED = "completed"  # the stream ended with `end`
    CLIENT_GONE = (
        "client_gone"  # the client left before the end (nobody came back to a held run); the run was cancelled
    )
    CANCELLED = "cancelled"  # stopped on purpose (DELETE /runs/{id}) before the end
    ERROR = "error"  # the stream ended with `error` (its type: haystream_stream_errors_total)
    REJECTED = "rejected"  # refused at admission with a 503 (why: haystream_refusals_total)


@dataclass(frozen=True)
class LiveGauge:
    """A value read when metrics are scraped."""

    name: str
    help: str
    read: Callable[[], float]
    mode: Literal["livesum", "livemax"] = "livesum"  # how multiprocess mode merges the workers' values


class Slots(Protocol):
    @property
    def active(self) -> int: ...
    @property
    def max_streams(self) -> int: ...


class Upstream(Protocol):
    @property
    def open_responses(self) -> int: ...


class Threads(Protocol):
    @property
    def busy(self) -> int: ...
    @property
    def size(self) -> int: ...


def live_gauges(
    admission: Slots, upstream: Upstream, pool: Threads, loop: asyncio.AbstractEventLoop, lag: Lag
) -> list[LiveGauge]:
    return [
        LiveGauge(
            "haystream_loop_lag_seconds",
            "How late the event loop runs a timer, smoothed; over HAYSTREAM_MAX_LOOP_LAG_MS, new streams get 503.",
            lambda: lag.seconds,
            "livemax",
        ),
        LiveGauge("haystream_active_streams", "Streams admitted and not yet finished.", lambda: admission.active),
        LiveGauge("haystream_max_streams", "Concurrent streams admitted before a 503.", lambda: admission.max_streams),
        LiveGauge("haystream_pool_busy_threads", "Stream pool threads running a pipeline step.", lambda: pool.busy),
        LiveGauge("haystream_pool_threads", "Size of the stream thread pool.", lambda: pool.size),
        LiveGauge(
            "haystream_upstream_open_responses",
            "Upstream responses not closed yet (each holds a pooled connection).",
            lambda: upstream.open_responses,
        ),
        LiveGauge(
            "haystream_asyncio_tasks", "Tasks on the service's event loop.", lambda: len(asyncio.all_tasks(loop))
        ),
        LiveGauge("haystream_threads", "Python threads alive in the process.", threading.active_count),
    ]


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.multiprocess = bool(getattr(values.ValueClass, "_multiprocess", False))
        registry = self.registry
        self._streams = Counter(
            "haystream_streams", "Chat requests by how their stream ended.", ["outcome"], registry=registry
        )
        self._errors = Counter(
            "haystream_stream_errors", "Streams that ended with an error event, by type.", ["type"], registry=registry
        )
        self._ttft = Histogram(
            "haystream_time_to_first_token_seconds",
            "From admission to the first text chunk, for runs that produced one.",
            buckets=TTFT_BUCKETS,
            registry=registry,
        )
        self._duration = Histogram(
            "haystream_stream_duration_seconds",
            "From admission to the end of the response, by outcome.",
            ["outcome"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self._chunks = Counter("haystream_chunks_sent", "Upstream text chunks sent to clients.", registry=registry)
        self._refusals = Counter(
            "haystream_refusals",
            "New streams refused with a 503 at_capacity, by reason.",
            ["reason"],
            registry=registry,
        )
        for reason in Refusal:
            self._refusals.labels(reason)
        for outcome in Outcome:
            self._streams.labels(outcome)
            if outcome is not Outcome.REJECTED:
                self._duration.labels(outcome)
        for error_type in ErrorType:
            self._errors.labels(error_type)
        self._live: list[LiveGauge] = []
        self._mirror: dict[str, Gauge] = {}
        self._timer: asyncio.TimerHandle | None = None
        if not self.multiprocess:
            registry.register(_LiveCollector(self._live))
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            GCCollector(registry=registry)

    def run_ended(self, outcome: str, chunks: int, ttft: float | None, duration: float) -> None:
        """Once per run, from `Run.close`; `outcome` is `completed`, `client_gone`, `cancelled` or `error:<type>`."""
        kind, _, error_type = outcome.partition(":")
        label = Outcome(kind)
        self._streams.labels(label).inc()
        if label is Outcome.ERROR:
            self._errors.labels(ErrorType(error_type)).inc()
        if ttft is not None:
            self._ttft.observe(ttft)
        self._duration.labels(label).observe(duration)
        if chunks:
            self._chunks.inc(chunks)

    def rejected(self, reason: Refusal) -> None:
        self._streams.labels(Outcome.REJECTED).inc()
        self._refusals.labels(reason).inc()

    def watch(self, gauges: list[LiveGauge], loop: asyncio.AbstractEventLoop) -> None:
        """Publish `gauges`: read at scrape time, or copied once a second in multiprocess mode."""
        self._live.extend(gauges)
        if self.multiprocess:
            for gauge in gauges:
                self._mirror[gauge.name] = Gauge(
                    gauge.name, gauge.help, multiprocess_mode=gauge.mode, registry=self.registry
                )
            self._copy_live(loop)

    def _copy_live(self, loop: asyncio.AbstractEventLoop) -> None:
        self._set_mirrors()
        self._timer = loop.call_later(MIRROR_INTERVAL, self._copy_live, loop)

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """The exposition for a scrape (Prometheus text, or OpenMetrics when asked for), and its content type."""
        encode, content_type = choose_encoder(accept or "")
        if not self.multiprocess:
            return encode(self.registry), content_type
        self._set_mirrors()
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        return encode(merged), content_type

    def _set_mirrors(self) -> None:
        for gauge in self._live:
            self._mirror[gauge.name].set(gauge.read())

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.multiprocess:
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


class _LiveCollector(Collector):
    def __init__(self, gauges: list[LiveGauge]) -> None:
        self._gauges = gauges

    def collect(self) -> list[Metric]:
        return [GaugeMetricFamily(gauge.name, gauge.help, value=gauge.read()) for gauge in self._gauges]


def clear_multiprocess_dir() -> None:
    """Start a multiprocess run from an empty slate: files from earlier processes would be summed in."""
    directory = os.environ.get(MULTIPROC_ENV)
    if directory and Path(directory).is_dir():
        for path in Path(directory).glob("*.db"):
            path.unlink(missing_ok=True)


@contextmanager
def private_multiprocess_dir(workers: int) -> Iterator[None]:
    """Multiprocess mode for several workers without set-up: a directory of our own, unless one is named.

    Set in the environment before uvicorn spawns the workers, which import prometheus-client afresh
    and so pick it up; the supervisor itself serves no metrics.
    """
    if workers <= 1 or os.environ.get(MULTIPROC_ENV):
        yield
        return
    directory = tempfile.mkdtemp(prefix="haystream-metrics-")
    os.environ[MULTIPROC_ENV] = directory
    try:
        yield
    finally:
        del os.environ[MULTIPROC_ENV]
        shutil.rmtree(directory, ignore_errors=True)
