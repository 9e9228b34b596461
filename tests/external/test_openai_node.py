"""/v1/chat/completions with the official `openai` npm package under node (installed with npm into
`.test-artifacts/npm-openai` on first use): the text it assembles is exactly what the upstream sent."""

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from service.demo_model import Behaviour, DemoModelServer, answer_tokens, expected_text
from tests.conftest import LiveFactory, LiveService
from tests.support.binaries import require

ROOT = Path(__file__).resolve().parents[2]
NPM_DIR = ROOT / ".test-artifacts" / "npm-openai"
PACKAGE = "openai@6.30.1"  # 6.x runs on node 20 (Debian's); 7.x needs node 22
MODULE = NPM_DIR / "node_modules" / "openai" / "index.mjs"
SCRIPT = ROOT / "tests" / "js" / "openai_client.mjs"
KEY = "sk-node-SENTINEL-c0ffee"


def install_openai() -> Path:
    if not MODULE.is_file():
        npm = require("npm")
        NPM_DIR.mkdir(parents=True, exist_ok=True)
        command = [npm, "install", "--prefix", str(NPM_DIR), "--no-audit", "--no-fund", "--no-save", PACKAGE]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
        assert result.returncode == 0, f"npm install {PACKAGE} failed:\n{result.stdout}\n{result.stderr}"
    return MODULE


def run_node(service: LiveService, mode: str, key: str = KEY) -> dict[str, Any]:
    node = require("node", "nodejs")
    command = [node, str(SCRIPT), str(install_openai()), service.url + "/v1", key, mode]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    outcome: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return outcome


@pytest.fixture
def service(live_service: LiveFactory, upstream_server: DemoModelServer) -> LiveService:
    upstream_server.behaviour = Behaviour(tokens=10, first_token_delay=0.0, token_delay=0.0)
    return live_service()


@pytest.mark.parametrize("mode", ["stream", "usage", "whole"])
def test_the_npm_client_gets_the_upstreams_exact_text(
    service: LiveService, upstream_server: DemoModelServer, mode: str
) -> None:
    outcome = run_node(service, mode)
    (record,) = upstream_server.wait_for_requests(1)
    assert record.api_key == KEY
    assert outcome["text"] == expected_text(record.prompt, upstream_server.behaviour)
    assert outcome["finish"] == "stop"
    if mode != "whole":
        assert len(outcome["ids"]) == 1 and outcome["ids"][0].startswith("chatcmpl-")
        assert (outcome["usage"] is not None) == (mode == "usage")


def test_the_npm_client_raises_its_authentication_error(service: LiveService, upstream_server: DemoModelServer) -> None:
    upstream_server.behaviour = Behaviour(fault="http_401")
    assert run_node(service, "stream") == {"error": "AuthenticationError", "status": 401, "code": "upstream_auth"}


def test_the_npm_client_raises_an_api_error_mid_stream(service: LiveService, upstream_server: DemoModelServer) -> None:
    upstream_server.behaviour = Behaviour(tokens=10, fault="reset", fault_after=4, first_token_delay=0, token_delay=0)
    outcome = run_node(service, "stream")
    (record,) = upstream_server.wait_for_requests(1)
    assert outcome["error"] == "APIError" and outcome["code"] == "upstream_unavailable"
    assert outcome["text"] == "".join(answer_tokens(record.prompt, 10)[:4])
