"""The caller's key: used for its own upstream request only, and never in a log, an event, an error or a repr.

There is no /metrics on this branch; when one lands, its output belongs in the sentinel check below.
"""

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from haystack.components.generators import OpenAIGenerator

from pipelines.chat import build_chat_pipeline
from service.demo_model import Behaviour, DemoModelServer
from service.http.schemas import ChatRequest
from tests.conftest import LiveFactory, LiveService
from tests.support.probes import RunSpy, raw_chat, read_until
from tests.support.servers import refused_port
from tests.support.sse import parse_sse
from tests.support.streams import LiveStream
from tests.support.waiting import wait_until

SENTINEL = "sk-SENTINEL-never-log-me-93c1f07e"
FAST: dict[str, Any] = {"tokens": 4, "first_token_delay": 0.0, "token_delay": 0.0}


class Everything(logging.Handler):
    """Keeps every record, formatted with its traceback, and the record's own fields."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
        self.lines.append(repr(vars(record)))


@pytest.fixture
def everything() -> Iterator[Everything]:
    """Every logger at DEBUG, the quiet third-party ones included, all captured."""
    handler = Everything()
    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in list(logging.root.manager.loggerDict))]
    saved = [(logger, logger.level, logger.disabled) for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
        logger.disabled = False
        if logger is logging.getLogger() or not logger.propagate:
            logger.addHandler(handler)
    try:
        yield handler
    finally:
        for logger, level, disabled in saved:
            logger.setLevel(level)
            logger.disabled = disabled
            if handler in logger.handlers:
                logger.removeHandler(handler)


def ask(service: LiveService, **extra: Any) -> str:
    response = service.client.post("/chat", json={"query": "a question", "api_key": SENTINEL} | extra)
    return response.text


def test_the_key_is_in_no_log_line_at_debug_across_success_faults_and_disconnects(
    live_service: LiveFactory, upstream_server: DemoModelServer, everything: Everything
) -> None:
    service = live_service(upstream_timeout=0.5, send_timeout=1, queue_size=2)
    spy = RunSpy(service.state.admission)
    seen: list[str] = []
    upstream_server.behaviour = Behaviour(**FAST)
    seen.append(ask(service))
    for fault in ("http_401", "http_403", "http_404", "http_429", "http_500", "http_503", "reset", "malformed"):
        upstream_server.behaviour = Behaviour(**FAST, fault=fault, fault_after=2)
        seen.append(ask(service))
    for fault in ("empty_chunk", "no_done", "close_mid", "stall_before_headers", "stall_mid", "large_chunk"):
        upstream_server.behaviour = Behaviour(**FAST, fault=fault, fault_after=2, large_chunk_chars=10_000)
        seen.append(ask(service))
    seen.append(service.client.post("/chat", json={"query": "", "api_key": SENTINEL}).text)
    seen.append(service.client.post("/chat", json={"query": "q"}, headers={"Authorization": f"Basic {SENTINEL}"}).text)
    seen.append(service.client.post("/chat", json={"query": "q" * 70_000, "api_key": SENTINEL}).text)  # 413

    upstream_server.behaviour = Behaviour(tokens=100, first_token_delay=0, token_delay=0.05)
    with LiveStream(service.client, {"query": "leaving", "api_key": SENTINEL}) as stream:
        stream.next_event()
        stream.next_event()
    upstream_server.behaviour = Behaviour(tokens=1000, token_chars=64 * 1024, first_token_delay=0, token_delay=0)
    stuck = raw_chat(service.url, {"query": "stuck", "api_key": SENTINEL}, rcvbuf=4096)
    read_until(stuck, b"event: metadata")
    wait_until(lambda: any(r.outcome == "client_gone" for r in spy.runs[-1:]), 10, "the stuck reader to be dropped")
    stuck.close()

    with refused_port() as port:
        refused = live_service(base_url=f"http://127.0.0.1:{port}/v1")
        seen.append(ask(refused))
    wait_until(lambda: service.state.admission.active == 0 and refused.state.admission.active == 0, 10, "idle")

    assert all(SENTINEL not in text for text in seen)
    assert len(everything.lines) > 40, "too little was captured for this test to mean anything"
    names = {line.split(" ", 2)[1] for line in everything.lines[::2]}
    assert {"service.streaming.run", "openai._base_client", "httpcore.http11"} <= names, names  # quiet loggers spoke
    leaks = [line for line in everything.lines if SENTINEL in line]
    assert not leaks, leaks[:3]


def test_the_key_is_in_no_repr() -> None:
    request = ChatRequest(query="q", api_key=SENTINEL)  # type: ignore[arg-type]
    pipeline = build_chat_pipeline(api_key=SENTINEL, model="m", base_url="http://127.0.0.1:9/v1")
    generator = pipeline.get_component("llm")
    assert isinstance(generator, OpenAIGenerator)
    shown = [repr(request), str(request), request.model_dump_json(), repr(request.model_dump())]
    shown += [repr(pipeline), str(pipeline), repr(generator), repr(vars(generator)), repr(generator.api_key)]
    shown += [str(generator.api_key), repr(generator.client)]
    assert all(SENTINEL not in text for text in shown)
    with pytest.raises(ValueError, match="Cannot serialize token-based secret") as refused:
        pipeline.dumps()
    assert SENTINEL not in str(refused.value)


async def test_a_run_has_no_key_in_its_repr(live_service: LiveFactory, upstream_server: DemoModelServer) -> None:
    upstream_server.behaviour = Behaviour(**(FAST | {"first_token_delay": 30}))
    service = live_service()
    spy = RunSpy(service.state.admission)
    with LiveStream(service.client, {"query": "q", "api_key": SENTINEL}) as stream:
        stream.next_event()
        (run,) = spy.runs
        assert all(SENTINEL not in text for text in (repr(run), str(run), repr(vars(run)), repr(run.task)))


def test_concurrent_callers_each_reach_the_upstream_with_only_their_own_key_amid_faults_and_leavers(
    live_service: LiveFactory, upstream_server: DemoModelServer
) -> None:
    """40 callers at once, a quarter each: 401 (the upstream quotes the key), reset mid-stream, leaving, fine."""
    count = 40
    upstream_server.behaviour = Behaviour(**(FAST | {"token_delay": 0.01}))
    for n in range(count):
        kind = n % 4
        if kind == 0:
            upstream_server.by_prompt[f"question {n}"] = Behaviour(**FAST, fault="http_401")
        elif kind == 1:
            upstream_server.by_prompt[f"question {n}"] = Behaviour(**FAST, fault="reset", fault_after=2)
        elif kind == 2:
            upstream_server.by_prompt[f"question {n}"] = Behaviour(tokens=200, first_token_delay=0, token_delay=0.02)
    service = live_service()

    def caller(n: int) -> str:
        body = {"query": f"question {n}", "api_key": f"sk-caller-{n:03d}"}
        if n % 4 == 2:
            with LiveStream(service.client, body) as stream:
                return "".join(repr(stream.next_event()) for _ in range(3))
        return service.client.post("/chat", json=body).text

    with ThreadPoolExecutor(count) as pool:
        seen = list(pool.map(caller, range(count)))

    records = upstream_server.wait_for_requests(count)
    assert sorted(record.api_key or "" for record in records) == [f"sk-caller-{n:03d}" for n in range(count)]
    for record in records:
        assert record.api_key == f"sk-caller-{int(record.prompt.removeprefix('question ')):03d}"
    for n, text in enumerate(seen):
        assert "sk-caller-" not in text, (n, text)  # not its own key, nor anyone else's
        events = parse_sse(text).events if n % 4 != 2 else []
        if n % 4 == 0:
            assert events[-1].json()["type"] == "upstream_auth"
        elif n % 4 == 1:
            assert events[-1].json()["type"] == "upstream_unavailable"
        elif n % 4 == 3:
            assert events[-1].event == "end"
    assert all(record.closed.wait(5) for record in records)
    wait_until(lambda: service.state.admission.active == 0 and service.state.threads.busy == 0, 10, "idle")
