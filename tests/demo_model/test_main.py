"""``python -m service.demo_model``, the command line."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading

import openai

from tests.demo_model.support import KEY, PROJECT_ROOT, stream_text


def test_command_line_serves_until_sigterm() -> None:
    command = [sys.executable, "-m", "service.demo_model", "--port", "0", "--tokens", "2"]
    command += ["--token-delay-ms", "0", "--first-token-ms", "0"]
    with subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True) as proc:
        killer = threading.Timer(20.0, proc.kill)
        killer.start()
        try:
            assert proc.stdout is not None
            base_url = proc.stdout.readline().split()[-1]
            with openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=0) as sdk:
                assert stream_text(sdk)[0] == "tok0 tok1 "
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10.0) == 0
        finally:
            killer.cancel()
