"""Haystack's usage telemetry stays off however the service is started."""

import os
import subprocess
import sys

import pytest

PROBE = "import {module}, haystack.telemetry._telemetry as t; print(t.telemetry is None)"


@pytest.mark.parametrize("module", ["service.app", "service.routes.chat", "service.__main__"])
def test_importing_the_service_leaves_haystack_telemetry_off(module: str) -> None:
    """Regression: `service.routes.chat` imported haystack before `pipelines` could turn telemetry off,
    so a service started by uvicorn (`service.app:app_from_env`) sent usage events to PostHog."""
    env = {k: v for k, v in os.environ.items() if k != "HAYSTACK_TELEMETRY_ENABLED"}
    probe = PROBE.format(module=module)
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "True", result.stderr
