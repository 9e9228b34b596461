"""Log lines: key=value text or JSON, the run id on every line about a run, and no key or query."""

import asyncio
import io
import json
import logging
import os
import sys
from typing import Any

import httpx
import openai
import pytest

from service.demo_model import Behaviour, DemoModelServer
from service.ops.logs import (
    QUIET_LOGGERS,
    AccessLogFilter,
    JsonFormatter,
    KeyValueFormatter,
    RunIdFilter,
    configure_logging,
    current_run_id,
    failure_fields,
    log_handler,
)
from tests.conftest import LiveFactory
from tests.support.sse import parse_sse
from tests.support.streams import LiveStream
from tests.support.waiting import wait_until


def _format(record: logging.LogRecord) -> str:
    RunIdFilter().filter(record)
    return KeyValueFormatter("%(levelname)s %(message)s").format(record)


def _record(message: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("service.test", logging.INFO, __file__, 1, message, None, None)
    record.__dict__.update(extra)
    return record


def test_extra_fields_follow_the_message() -> None:
    line = _format(_record("run ended", outcome="completed", ttft_ms=12.5, note="two words"))
    assert line == 'INFO run ended outcome=completed ttft_ms=12.5 note="two words"'


async def test_the_run_id_reaches_lines_logged_in_the_runs_tasks_and_threads() -> None:
    current_run_id.set("run_abc")
    in_thread = await asyncio.to_thread(lambda: _format(_record("from a worker thread")))

    async def log_in_task() -> str:
        return _format(_record("from a task"))

    in_task = await asyncio.create_task(log_in_task())
    assert in_thread.endswith("run_id=run_abc")
    assert in_task.endswith("run_id=run_abc")


def test_lines_outside_a_run_carry_no_run_id() -> None:
    assert "run_id" not in _format(_record("startup"))


def test_third_party_loggers_stay_quiet_at_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    for name in QUIET_LOGGERS:
        monkeypatch.setattr(logging.getLogger(name), "level", logging.getLogger(name).level)
    configure_logging("debug")
    assert root.level == logging.DEBUG
    assert all(logging.getLogger(name).level == logging.WARNING for name in QUIET_LOGGERS)


def _json(record: logging.LogRecord) -> dict[str, object]:
    RunIdFilter().filter(record)
    AccessLogFilter().filter(record)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    parsed: dict[str, object] = json.loads(line)
    return parsed


def test_json_lines_carry_the_standard_fields_the_extras_and_the_run_id() -> None:
    token = current_run_id.set("run_json")
    try:
        entry = _json(_record("run ended", outcome="completed", chunks=3, ttft_ms=None))
    finally:
        current_run_id.reset(token)  # a sync test runs in the main context: the id would outlive it
    assert str(entry.pop("time")).endswith("+00:00")
    assert entry == {
        "level": "INFO",
        "logger": "service.test",
        "message": "run ended",
        "outcome": "completed",
        "chunks": 3,
        "ttft_ms": None,
        "run_id": "run_json",
    }


async def test_every_line_says_which_worker_process_wrote_it() -> None:
    """`--workers N` writes N processes' lines to one stream: each line carries its process's pid."""
    buffers = {log_format: io.StringIO() for log_format in ("json", "text")}
    logger = logging.getLogger("service.test.worker")
    handlers = [log_handler(log_format, buffer) for log_format, buffer in buffers.items()]  # type: ignore[arg-type]
    for handler in handlers:
        logger.addHandler(handler)
    try:
        logger.warning("on the loop")
        await asyncio.to_thread(logger.warning, "on a thread")
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
    entries = [json.loads(line) for line in buffers["json"].getvalue().splitlines()]
    assert [entry["worker"] for entry in entries] == [os.getpid()] * 2
    assert [line.endswith(f" worker={os.getpid()}") for line in buffers["text"].getvalue().splitlines()] == [True] * 2


def test_json_lines_keep_a_traceback_in_one_field() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.LogRecord("service.test", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    entry = _json(record)
    assert "RuntimeError: boom" in str(entry["exc_info"])


def _access_record(path: str) -> logging.LogRecord:
    args = ("127.0.0.1:5000", "POST", path, "1.1", 200)
    return logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d', args, None)


def test_the_access_line_drops_the_query_string_and_has_fields_in_json() -> None:
    entry = _json(_access_record("/chat?api_key=sk-in-the-url"))
    assert entry["message"] == '127.0.0.1:5000 - "POST /chat HTTP/1.1" 200'
    assert (entry["method"], entry["path"], entry["status"]) == ("POST", "/chat", 200)
    assert "sk-in-the-url" not in json.dumps(entry)
    text = _access_record("/chat?api_key=sk-in-the-url")
    AccessLogFilter().filter(text)
    assert "sk-in-the-url" not in KeyValueFormatter("%(message)s").format(text)


def test_a_failure_is_described_by_its_type_and_classes_never_its_text() -> None:
    request = httpx.Request("POST", "http://upstream.test/v1/chat/completions")
    response = httpx.Response(401, request=request)
    message = "Incorrect API key provided: sk-SECRET-in-the-message"
    try:
        try:
            raise openai.AuthenticationError(message, response=response, body=None)
        except openai.AuthenticationError as error:
            raise RuntimeError("the pipeline failed: sk-SECRET-in-the-message") from error
    except RuntimeError as error:
        fields = failure_fields(error)
    assert fields == {
        "error_type": "upstream_auth",
        "error_chain": "RuntimeError>openai.AuthenticationError",
        "upstream_status": 401,
    }


def test_an_internal_failure_says_where_it_happened() -> None:
    def broken() -> None:
        raise KeyError("the user's question")

    try:
        broken()
    except KeyError as error:
        fields = failure_fields(error)
    assert fields["error_type"] == "internal" and fields["error_chain"] == "KeyError"
    assert str(fields["error_at"]).startswith(__file__ + ":")
    assert "question" not in repr(fields)


KEY = "sk-logs-SENTINEL-77e1"
QUERY = "QUERY-SENTINEL what do the logs say?"


def test_every_json_line_about_a_run_carries_its_run_id(
    live_service: LiveFactory, upstream_server: DemoModelServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Admission, start, failure, end and uvicorn's access line: all tied to the run, none with the key."""
    caplog.set_level(logging.INFO)
    buffer = io.StringIO()
    handler = log_handler("json", buffer)
    logging.getLogger().addHandler(handler)
    try:
        service = live_service(max_streams=1)
        body = {"query": QUERY, "api_key": KEY}
        upstream_server.behaviour = Behaviour(tokens=3, first_token_delay=0, token_delay=0)
        completed = parse_sse(service.client.post("/chat", json=body).text).events[0].json()["run_id"]
        upstream_server.behaviour = Behaviour(fault="http_401")  # its message quotes the key back
        failed = parse_sse(service.client.post("/chat", json=body).text).events[0].json()["run_id"]
        upstream_server.behaviour = Behaviour(first_token_delay=60)
        with LiveStream(service.client, body) as stream:
            metadata = stream.next_event()
            assert metadata is not None
            gone = metadata.json()["run_id"]
            assert service.client.post("/chat", json=body).status_code == 503

        def lines() -> list[dict[str, Any]]:
            return [json.loads(line) for line in buffer.getvalue().splitlines()]

        wait_until(lambda: sum(line["message"] == "run ended" for line in lines()) == 3, message="three run ends")
    finally:
        logging.getLogger().removeHandler(handler)
    logged = lines()
    by_run = {run: [line for line in logged if line.get("run_id") == run] for run in (completed, failed, gone)}
    for run, run_lines in by_run.items():
        messages = [line["message"] for line in run_lines if line["logger"] == "service.streaming.run"]
        assert messages[0] == "run started" and messages[-1] == "run ended", (run, messages)
        access = [line for line in run_lines if line["logger"] == "uvicorn.access"]
        assert [(a["method"], a["path"], a["status"]) for a in access] == [("POST", "/chat", 200)]
    (failure,) = [line for line in by_run[failed] if line["message"] == "run failed"]
    assert failure["level"] == "WARNING"
    assert failure["error_type"] == "upstream_auth" and failure["upstream_status"] == 401
    ends = {line["run_id"]: line["outcome"] for line in logged if line["message"] == "run ended"}
    assert ends == {completed: "completed", failed: "error:upstream_auth", gone: "client_gone"}
    unowned = [line for line in logged if line["logger"] == "service.streaming.run" and "run_id" not in line]
    assert [line["message"] for line in unowned] == ["run refused: at capacity"]
    (refused,) = [line for line in logged if line["logger"] == "uvicorn.access" and line["status"] == 503]
    assert "run_id" not in refused
    assert KEY not in buffer.getvalue() and "SENTINEL" not in buffer.getvalue()
