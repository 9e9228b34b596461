"""`GET /metrics`: names, labels and values after real runs, and nothing a caller sent."""

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.demo_model import Behaviour, DemoModelServer
from service.errors import ErrorType, Refusal
from service.ops.metrics import Outcome, ServiceMetrics
from tests.conftest import LiveFactory
from tests.support.servers import run_service_process
from tests.support.sse import parse_sse
from tests.support.streams import LiveStream
from tests.support.waiting import wait_until

KEY = "sk-metrics-SENTINEL-0c9d"
QUERY = "QUERY-SENTINEL what is in the metrics?"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client: httpx.Client) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


def parse(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def body() -> dict[str, str]:
    return {"query": QUERY, "api_key": KEY}


def test_metrics_count_a_completed_run_an_error_a_client_gone_run_and_a_503(
    live_service: LiveFactory, upstream_server: DemoModelServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="service.streaming.run")
    service = live_service(max_streams=1)
    upstream_server.behaviour = Behaviour(tokens=5, first_token_delay=0, token_delay=0)
    assert parse_sse(service.client.post("/chat", json=body()).text).events[-1].event == "end"
    upstream_server.behaviour = Behaviour(fault="http_500")
    assert parse_sse(service.client.post("/chat", json=body()).text).events[-1].event == "error"

    upstream_server.behaviour = Behaviour(tokens=500, first_token_delay=0, token_delay=0.05)
    with LiveStream(service.client, body()) as stream:
        assert [e.event for e in (stream.next_event(), stream.next_event()) if e] == ["metadata", "data"]
        live = scrape(service.client)
        assert value(live, "haystream_active_streams") == 1
        assert value(live, "haystream_pool_busy_threads") >= 1
        assert value(live, "haystream_upstream_open_responses") == 1
        refused = service.client.post("/chat", json=body())
        assert refused.status_code == 503
    wait_until(lambda: service.state.admission.active == 0, message="the held run to be released")

    def ended() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.getMessage() == "run ended"]

    wait_until(lambda: len(ended()) == 3, message="three runs to end")
    samples = scrape(service.client)
    streams = {outcome: value(samples, "haystream_streams_total", outcome=outcome) for outcome in Outcome}
    assert streams == {"completed": 1, "client_gone": 1, "cancelled": 0, "error": 1, "rejected": 1}
    errors = {t: value(samples, "haystream_stream_errors_total", type=t) for t in ErrorType}
    assert errors == {t: (1 if t == ErrorType.UPSTREAM_UNAVAILABLE else 0) for t in ErrorType}
    chunks = sum(r.chunks for r in ended())  # type: ignore[attr-defined]
    assert chunks >= 5 + 1
    assert value(samples, "haystream_chunks_sent_total") == chunks
    assert value(samples, "haystream_time_to_first_token_seconds_count") == 2  # the error run had no first chunk
    for outcome in ("completed", "client_gone", "error"):
        assert value(samples, "haystream_stream_duration_seconds_count", outcome=outcome) == 1
    durations = value(samples, "haystream_stream_duration_seconds_sum", outcome="client_gone")
    assert durations > 0
    assert value(samples, "haystream_active_streams") == 0
    assert value(samples, "haystream_upstream_open_responses") == 0
    assert value(samples, "haystream_max_streams") == 1
    assert value(samples, "haystream_pool_threads") == service.state.threads.size
    assert value(samples, "haystream_asyncio_tasks") >= 1
    assert value(samples, "haystream_threads") >= 1
    assert value(samples, "process_resident_memory_bytes") > 0
    assert value(samples, "process_open_fds") > 0
    wait_until(lambda: value(scrape(service.client), "haystream_pool_busy_threads") == 0, message="idle pool")


def test_labels_come_only_from_fixed_enums_and_nothing_the_caller_sent_appears(
    live_service: LiveFactory, upstream_server: DemoModelServer
) -> None:
    service = live_service()
    upstream_server.behaviour = Behaviour(tokens=3, first_token_delay=0, token_delay=0)
    service.client.post("/chat", json=body())
    upstream_server.behaviour = Behaviour(fault="http_401")  # its message quotes the key back
    service.client.post("/chat", json=body())
    text = service.client.get("/metrics").text
    assert KEY not in text and "SENTINEL" not in text
    allowed: dict[str, set[str]] = {"outcome": set(Outcome), "type": set(ErrorType), "reason": set(Refusal)}
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("haystream_"):
            continue
        for sample in family.samples:
            for label, label_value in sample.labels.items():
                if label == "le":
                    continue
                assert label in allowed, (sample.name, label)
                assert label_value in allowed[label], (sample.name, label_value)


def test_openmetrics_is_served_when_asked_for(live_service: LiveFactory) -> None:
    service = live_service()
    response = service.client.get("/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"})
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.rstrip().endswith("# EOF")


def test_each_app_counts_its_own_runs_in_its_own_registry() -> None:
    first, second = ServiceMetrics(), ServiceMetrics()  # a shared registry would refuse the second
    first.run_ended("completed", 4, 0.2, 1.0)
    first.rejected(Refusal.SLOTS)
    second.run_ended("error:rate_limited", 0, None, 0.1)
    assert first.registry.get_sample_value("haystream_streams_total", {"outcome": "completed"}) == 1
    assert second.registry.get_sample_value("haystream_streams_total", {"outcome": "completed"}) == 0
    assert first.registry.get_sample_value("haystream_streams_total", {"outcome": "rejected"}) == 1
    assert second.registry.get_sample_value("haystream_stream_errors_total", {"type": "rate_limited"}) == 1
    assert first.registry.get_sample_value("haystream_chunks_sent_total") == 4


def test_an_outcome_outside_the_enums_is_refused_rather_than_becoming_a_label() -> None:
    metrics = ServiceMetrics()
    with pytest.raises(ValueError, match="not a valid"):
        metrics.run_ended("error:something the upstream said", 0, None, 0.1)
    with pytest.raises(ValueError, match="not a valid"):
        metrics.run_ended("finished", 0, None, 0.1)


@contextmanager
def two_workers(tmp_path: Path, redis_url: str, metrics_dir: Path | None) -> Iterator[str]:
    """`python -m service --demo --workers 2` on the Redis store; `metrics_dir`: PROMETHEUS_MULTIPROC_DIR, if any."""
    (tmp_path / "tmp").mkdir()
    env = {
        "HAYSTREAM_STORE_URL": redis_url,
        "HAYSTREAM_DEMO_TOKEN_DELAY": "0",
        "HAYSTREAM_DEMO_FIRST_TOKEN_DELAY": "0.2",
        "TMPDIR": str(tmp_path / "tmp"),  # where a private metrics directory would go
    }
    if metrics_dir is not None:
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    args = ("--demo", "--workers", "2")
    with run_service_process(
        *args, env=env, log_dir=tmp_path, ready="/readyz", start_timeout=60, stop_timeout=20
    ) as service:
        yield service.url


def assert_both_workers_counted(url: str) -> None:
    count = 12

    # Ready means one worker answers; the other may still be starting (its lifespan writes its
    # capacity gauge): both must be up for the requests below to spread over them.
    def both_up() -> bool:
        return value(parse(httpx.get(f"{url}/metrics", timeout=10).text), "haystream_max_streams") == 2 * 256

    wait_until(both_up, 60, "both workers to have started")

    def ask(_: int) -> str:
        response = httpx.post(f"{url}/chat", json=body(), timeout=30)
        return parse_sse(response.text).events[-1].event

    with ThreadPoolExecutor(count) as pool:  # concurrent, so both workers are likely to take some
        assert list(pool.map(ask, range(count))) == ["end"] * count
    for _ in range(4):  # whichever worker answers the scrape, it reports both workers' runs
        samples = parse(httpx.get(f"{url}/metrics", timeout=10).text)
        assert value(samples, "haystream_streams_total", outcome="completed") == count
        assert value(samples, "haystream_max_streams") == 2 * 256  # livesum: both workers' capacity
        assert ("process_resident_memory_bytes", ()) not in samples


def test_multiprocess_mode_sums_counters_across_workers(tmp_path: Path, redis_url: str) -> None:
    directory = tmp_path / "prometheus"
    directory.mkdir()
    (directory / "counter_999999.db").write_bytes(b"stale")  # left by an earlier run: must be wiped
    with two_workers(tmp_path, redis_url, directory) as url:
        assert_both_workers_counted(url)
        assert not (directory / "counter_999999.db").exists()


def test_several_workers_sum_their_metrics_with_no_set_up(tmp_path: Path, redis_url: str) -> None:
    """No PROMETHEUS_MULTIPROC_DIR: `--workers 2` makes a private one, and removes it on exit."""

    def private_dirs() -> list[Path]:
        return [path for path in (tmp_path / "tmp").iterdir() if path.name.startswith("haystream-metrics-")]

    with two_workers(tmp_path, redis_url, None) as url:
        assert len(private_dirs()) == 1
        assert_both_workers_counted(url)
    assert private_dirs() == []
