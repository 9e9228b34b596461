"""The README's code is the code that is tested."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_quotes_the_tested_fetch_event_source_snippet_verbatim() -> None:
    """The browser tests run examples/fetch-event-source.js; the README must show exactly that."""
    snippet = (ROOT / "examples" / "fetch-event-source.js").read_text()
    blocks = re.findall(r"^```js\n(.*?)^```$", (ROOT / "README.md").read_text(), re.MULTILINE | re.DOTALL)
    assert snippet in blocks, "README.md's fetch-event-source snippet differs from examples/fetch-event-source.js"


def test_the_readme_points_at_the_files_it_names() -> None:
    readme = (ROOT / "README.md").read_text()
    for path in ("deploy/nginx.conf", "examples/fetch-event-source.js", "service/http/static/sse-client.mjs"):
        assert path in readme and (ROOT / path).is_file(), path
