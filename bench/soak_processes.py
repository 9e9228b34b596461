"""The soak run's processes: the demo model and the service as subprocesses, and /proc readings of one.

Both run from this checkout (`cwd` and `PYTHONPATH` are its root), whatever an installed copy says.
Each process logs to a file in `log_dir`; each is stopped with SIGTERM (then SIGKILL after a grace)
when the `with` block ends, whatever happened in it.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
STOP_GRACE = 15.0
START_TIMEOUT = 60.0
# Settings from the caller's environment that would change what is measured.
_SCRUBBED = ("PROMETHEUS_MULTIPROC_DIR", "OPENAI_BASE_URL", "HAYSTREAM_LOG_FORMAT")


@dataclass(frozen=True)
class ProcSample:
    rss_bytes: int
    threads: int  # OS threads (/proc/PID/status)
    fds: int  # open file descriptors (/proc/PID/fd)
    cpu_seconds: float  # user + system time so far


def proc_sample(pid: int) -> ProcSample:
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    stat = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()  # fields 3.. (utime is 14, stime 15)
    return ProcSample(
        rss_bytes=int(status["VmRSS"].split()[0]) * 1024,
        threads=int(status["Threads"]),
        fds=len(os.listdir(f"/proc/{pid}/fd")),
        cpu_seconds=(int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK"),
    )


@dataclass(frozen=True)
class Stack:
    url: str  # the service
    pid: int  # the service's process
    upstream_url: str  # the demo model's /v1


@dataclass(frozen=True)
class StackConfig:
    max_streams: int
    tokens: int
    token_delay_ms: float
    first_token_ms: float
    log_dir: Path


@contextmanager
def running_stack(config: StackConfig) -> Iterator[Stack]:
    """The demo model (obeying prompt directives) and one uvicorn process of the service in front of it."""
    with ExitStack() as stack:
        upstream_port, service_port = _unused_port(), _unused_port()
        demo_command = [
            *("-m", "service.demo_model", "--port", str(upstream_port), "--tokens", str(config.tokens)),
            *("--token-delay-ms", str(config.token_delay_ms), "--first-token-ms", str(config.first_token_ms)),
            "--directives",
        ]
        demo = stack.enter_context(_process(demo_command, config.log_dir / "demo_model.log", {}))
        _wait_until_up(f"http://127.0.0.1:{upstream_port}/health", demo, config.log_dir / "demo_model.log")
        upstream_url = f"http://127.0.0.1:{upstream_port}/v1"
        env = {
            "HAYSTREAM_BASE_URL": upstream_url,
            "HAYSTREAM_MODEL": "demo",
            "HAYSTREAM_MAX_STREAMS": str(config.max_streams),
            # Over capacity here means every slot taken, and only the planned extras may get a 503;
            # admission by loop lag is the overload scenario's (bench/overload.py).
            "HAYSTREAM_MAX_LOOP_LAG_MS": "10000",
            # Faults must reach clients as they were injected: a retry would turn one request into several.
            "HAYSTREAM_UPSTREAM_MAX_RETRIES": "0",
            "HAYSTREAM_LOG_LEVEL": "info",
        }
        service_command = ["-m", "service", "--port", str(service_port)]
        service = stack.enter_context(_process(service_command, config.log_dir / "service.log", env))
        url = f"http://127.0.0.1:{service_port}"
        _wait_until_up(f"{url}/readyz", service, config.log_dir / "service.log")
        yield Stack(url=url, pid=service.pid, upstream_url=upstream_url)


@contextmanager
def _process(args: list[str], log: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    base = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    full_env = base | {"PYTHONPATH": str(ROOT)} | env
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, env=full_env, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        yield process
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_GRACE)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def _wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the process exited ({process.returncode}):\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {START_TIMEOUT} s:\n{log.read_text()[-4000:]}")


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
