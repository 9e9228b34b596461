"""Debian's tinyproxy on a loopback port, as the egress proxy an operator would set in HTTPS_PROXY.

It runs in the foreground (`-d`) with a config generated per test (no `ConnectPort` line, so CONNECT
may reach any port), logging every request line it takes to a file: `requests()` is how a test
tells that a request went through it, or did not.
"""

import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.binaries import require
from tests.support.servers import accepts, stop_process, unused_port
from tests.support.waiting import wait_until

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
_REQUEST = re.compile(r"Request \(file descriptor \d+\): (.+)$", re.MULTILINE)


def without_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """None of the machine's own proxy variables, in either case, for the rest of the test."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@dataclass(frozen=True)
class Tinyproxy:
    url: str
    log: Path

    def requests(self) -> list[str]:
        """Request lines taken so far: `POST http://127.0.0.1:8001/v1/... HTTP/1.1`, `CONNECT host:port HTTP/1.0`."""
        return _REQUEST.findall(self.log.read_text()) if self.log.exists() else []


@contextmanager
def run_tinyproxy(workdir: Path) -> Iterator[Tinyproxy]:
    binary = require("tinyproxy")
    port = unused_port()
    log = workdir / "tinyproxy.log"
    conf = workdir / "tinyproxy.conf"
    lines = [f"Port {port}", "Listen 127.0.0.1", "Timeout 60", f'LogFile "{log}"', "LogLevel Info", "MaxClients 16"]
    conf.write_text("\n".join([*lines, "Allow 127.0.0.1", ""]))
    output = workdir / "tinyproxy.out"
    with output.open("wb") as sink:
        process = subprocess.Popen([binary, "-d", "-c", str(conf)], stdin=subprocess.DEVNULL, stdout=sink, stderr=sink)
    try:
        wait_until(lambda: process.poll() is not None or accepts(port), 10, "tinyproxy to listen")
        if process.poll() is not None:
            raise RuntimeError(f"tinyproxy exited with {process.returncode}:\n{output.read_text()}")
        yield Tinyproxy(f"http://127.0.0.1:{port}", log)
    finally:
        if process.poll() is None:
            stop_process(process, 10)
