"""Ctrl+C (SIGINT), the quick stop, on a real `python -m service` process while it streams."""

import signal
from pathlib import Path

import httpx

from service.demo_model import Behaviour, DemoModelServer
from tests.support.servers import run_service_process
from tests.support.streams import LiveStream

LONG = Behaviour(tokens=5000, first_token_delay=0, token_delay=0.02)  # 100 s: still streaming when stopped


def test_ctrl_c_during_a_stream_logs_one_line_and_no_traceback(
    upstream_server: DemoModelServer, tmp_path: Path
) -> None:
    """Regression: the stream's task was cancelled mid-write by uvicorn after its graceful timeout, which
    logged `ERROR ... Exception in ASGI application` and a 52-line CancelledError traceback."""
    upstream_server.behaviour = LONG
    env = {"HAYSTREAM_BASE_URL": upstream_server.base_url, "HAYSTREAM_MODEL": "demo"}
    with run_service_process(env=env, log_dir=tmp_path, kill_on_exit=True) as service:
        with (
            httpx.Client(base_url=service.url, timeout=30) as client,
            LiveStream(client, {"query": "long", "api_key": "sk-quick-stop"}) as stream,
        ):
            first = [stream.next_event(), stream.next_event()]
            assert [event.event for event in first if event] == ["metadata", "data"]
            service.process.send_signal(signal.SIGINT)
            last = stream.rest()[-1]
        assert service.process.wait(10) == 0
    assert last.event == "error"
    assert last.json()["type"] == "shutting_down"  # retryable: the client may send it again elsewhere
    assert stream.parser.complete, "the stream was cut mid-frame"
    lines = service.log.read_text().splitlines()
    assert not [line for line in lines if "Traceback" in line or " ERROR " in line], "\n".join(lines)
    stopped = [line for line in lines if "SIGINT" in line]
    assert len(stopped) == 1 and "stopping now" in stopped[0], "\n".join(lines)
