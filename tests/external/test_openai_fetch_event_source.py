"""The documented fetch-event-source client for /v1/chat/completions (`examples/openai-fetch-event-source.js`,
quoted verbatim in docs/openai-compatible.md), run under node with the real package: a connection cut
mid-stream is resumed with Last-Event-ID, and the text is whole, from one generation."""

import json
import shutil
import subprocess
from pathlib import Path

from service.demo_model import Behaviour, DemoModelServer, expected_text
from tests.conftest import LiveFactory
from tests.support.binaries import require
from tests.support.browser import NPM_DIR, install_fetch_event_source
from tests.support.tcp_proxy import severable_proxy
from tests.support.waiting import wait_until
from tests.test_docs import code_blocks, expanded

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "openai-fetch-event-source.js"
DRIVER = ROOT / "tests" / "js" / "openai_fes_driver.mjs"
KEY = "sk-fes-SENTINEL-0a9b8c"


def test_the_docs_quote_the_tested_snippet_verbatim() -> None:
    snippet = EXAMPLE.read_text().rstrip("\n")
    blocks = [block.rstrip("\n") for block in code_blocks(expanded(ROOT / "docs" / "openai-compatible.md"), "js")]
    assert snippet in blocks


def test_a_cut_connection_resumes_the_same_completion(
    live_service: LiveFactory, upstream_server: DemoModelServer, tmp_path: Path
) -> None:
    node = require("node", "nodejs")
    install_fetch_event_source()
    example = NPM_DIR / "openai-fetch-event-source.js"  # beside node_modules, so its bare import resolves
    shutil.copyfile(EXAMPLE, example)
    upstream_server.behaviour = Behaviour(tokens=40, first_token_delay=0, token_delay=0.03)
    service = live_service()
    with severable_proxy(service.url) as proxy:
        url = proxy.url + "/v1/chat/completions"
        client = subprocess.Popen([node, str(DRIVER), str(example), url, KEY], stdout=subprocess.PIPE, text=True)
        try:
            (record,) = upstream_server.wait_for_requests(1)
            wait_until(lambda: record.tokens_sent >= 5, 10, "a few tokens streamed")
            assert proxy.sever() == 1
            output, _ = client.communicate(timeout=30)
        finally:
            client.kill()
    outcome = json.loads(output.strip().splitlines()[-1])
    assert outcome["ok"], outcome
    assert outcome["text"] == expected_text(record.prompt, upstream_server.behaviour)
    assert proxy.connections == 2, "one reconnect"
    assert len(upstream_server.requests) == 1, "resumed, not generated again"
