"""The docs' shell examples, run against the real service on the demo model, print what the docs show.

Each docs/examples/NAME.sh runs with `BASE` set to a `python -m service --demo` process (default
token pace, as `make run` has it) and its output must equal NAME.out, run ids aside. When the
service's answer changes on purpose, regenerate an output against `make run`:
`BASE=http://127.0.0.1:8000 sh docs/examples/NAME.sh > docs/examples/NAME.out`.
"""

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.servers import run_service_process
from tests.support.waiting import wait_until

pytestmark = pytest.mark.external

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"
RUN_ID = re.compile(r"run_[A-Za-z0-9_-]{22}")
WITH_OUTPUT = sorted(path.stem for path in EXAMPLES.glob("*.out"))


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with run_service_process("--demo", env={}, log_dir=tmp_path_factory.mktemp("service")) as service:
        yield service.url


def run_example(name: str, base: str) -> str:
    if name == "health.sh":  # readiness counts streams until their threads are free
        wait_until(lambda: httpx.get(f"{base}/readyz").json()["active_streams"] == 0, message="no active stream")
    result = subprocess.run(
        ["sh", str(EXAMPLES / name)], env=os.environ | {"BASE": base}, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def same_run_ids(output: str, expected: str) -> str:
    """`output` with each run id replaced by the one in the same place of `expected`."""
    ids = dict(zip(dict.fromkeys(RUN_ID.findall(output)), dict.fromkeys(RUN_ID.findall(expected)), strict=True))
    return RUN_ID.sub(lambda match: ids[match.group()], output)


def events(stream: str) -> list[tuple[str, str]]:
    """(id, event name) of each event in an SSE text."""
    found = re.findall(r"^id: (\S+)\nevent: (\w+)$", stream, re.MULTILINE)
    return [(event_id, name) for event_id, name in found]


@pytest.mark.parametrize("name", WITH_OUTPUT)
def test_the_example_prints_what_its_page_shows(base: str, name: str) -> None:
    expected = (EXAMPLES / f"{name}.out").read_text()
    output = same_run_ids(run_example(f"{name}.sh", base), expected)
    assert output == expected, f"docs/examples/{name}.sh no longer prints docs/examples/{name}.out (see docstring)"


def test_the_chat_example_streams_the_whole_run_with_ids_in_order(base: str) -> None:
    stream = run_example("chat.sh", base)
    (run_id,) = set(RUN_ID.findall(stream))
    found = events(stream)
    assert [event_id for event_id, _ in found] == [f"{run_id}:{n}" for n in range(len(found))]
    assert [name for _, name in found] == ["metadata", *["data"] * (len(found) - 2), "end"]
    assert len(found) == len(events((EXAMPLES / "chat.out").read_text())) == 41


def test_the_runs_example_starts_reads_resumes_and_deletes_one_run(base: str) -> None:
    output = run_example("runs.sh", base)
    run_id, rest = output.split("\n", 1)
    assert RUN_ID.fullmatch(run_id)
    found = events(rest)
    whole, resumed = found[:41], found[41:]
    assert [event_id for event_id, _ in whole] == [f"{run_id}:{n}" for n in range(41)]
    assert [event_id for event_id, _ in resumed] == [f"{run_id}:{n}" for n in (38, 39, 40)]
    assert output.endswith("\n204\n")


def test_the_refusal_example_is_a_422_naming_the_field(base: str) -> None:
    body, status = run_example("refusal.sh", base).splitlines()
    assert status == "422"
    assert '"field":"stream_mode"' in body


def test_the_cors_example_is_a_valid_configuration() -> None:
    script = f'. "{EXAMPLES / "cors.sh"}" && exec "$PYTHON" -c "$CODE"'
    code = "from service.settings import Settings; s = Settings(); print(*s.cors_origins, s.cors_allow_credentials)"
    env = os.environ | {"PYTHON": sys.executable, "CODE": code}
    result = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["https://app.example.com", "http://localhost:5173", "True"]
