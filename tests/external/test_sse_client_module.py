"""The page's client module (`service/http/static/sse-client.mjs`), tested with node's own test runner.

The cases live in `tests/js/sse_client.test.mjs`: crafted chunk splits (every split point, CRLF
halves in separate reads, UTF-8 split across reads), multi-line data, comments, `error` events, a
stream that ends without `end`, refusals and abort. This test runs them and fails with node's report.
"""

import subprocess
from pathlib import Path

from tests.support.binaries import require

JS_TESTS = Path(__file__).resolve().parents[1] / "js"


def test_the_client_module_passes_its_node_tests() -> None:
    node = require("node", "nodejs")
    files = sorted(str(path) for path in JS_TESTS.glob("*.test.mjs"))
    assert files, "no node tests found"
    result = subprocess.run(
        [node, "--test", "--test-reporter=tap", *files],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    assert "# fail 0" in report and "# pass 0" not in report, report
