"""Log lines: key=value fields, and the run id on every line logged on a run's behalf."""

import asyncio
import logging

import pytest

from service.logs import QUIET_LOGGERS, KeyValueFormatter, RunIdFilter, configure_logging, current_run_id


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
