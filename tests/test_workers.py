"""`--workers auto`: one worker per CPU the process may use (its affinity), not the machine's count."""

import os

import pytest

from service.__main__ import parse_args


def test_auto_is_the_cpus_the_process_may_run_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {0, 3, 5}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)  # a container on a big host sees the host's count
    assert parse_args(["--workers", "auto"]).workers == 3


def test_a_count_is_taken_as_it_is_and_one_is_the_default() -> None:
    assert parse_args(["--workers", "4"]).workers == 4
    assert parse_args([]).workers == 1


@pytest.mark.parametrize("value", ["0", "-2", "many"])
def test_anything_else_is_refused(value: str) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--workers", value])
