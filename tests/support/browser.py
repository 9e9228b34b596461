"""Headless Chromium (Debian's) driven by Playwright, and the pages the browser tests load.

`playwright install` is never called: Playwright drives /usr/bin/chromium, which `make test`
installs with apt-get when it is missing. Each launch gets a fresh temporary profile from
Playwright, and the flags keep Chromium off the network (no background services, no QUIC).

The fetch-event-source test page is served by the browser itself (request interception) under
`/__test__/` on the service's own origin, so `/chat` is same-origin exactly as in a real app,
directly or through nginx. It loads the real `@microsoft/fetch-event-source`, installed with npm
into `.test-artifacts/npm` on first use. Its ESM build imports `./fetch` without an extension, so
the page's import map points each extensionless module at its `.js` file.
"""

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import Browser, ConsoleMessage, Page, Request, Response, Route, sync_playwright

from tests.support.binaries import require

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "fetch-event-source.js"
NPM_DIR = ROOT / ".test-artifacts" / "npm"
FES_PACKAGE = "@microsoft/fetch-event-source@2.0.1"
FES_ESM = NPM_DIR / "node_modules" / "@microsoft" / "fetch-event-source" / "lib" / "esm"
TEST_PREFIX = "/__test__/"
FES_PAGE = f"{TEST_PREFIX}fetch-event-source.html"
EVENTSOURCE_PAGE = f"{TEST_PREFIX}eventsource.html"

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def launch_chromium() -> Iterator[Browser]:
    chromium = require("chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def install_fetch_event_source() -> Path:
    """The package's ESM directory, installed from the npm registry when it is not there yet."""
    if not (FES_ESM / "index.js").is_file():
        npm = require("npm")
        NPM_DIR.mkdir(parents=True, exist_ok=True)
        command = [npm, "install", "--prefix", str(NPM_DIR), "--no-audit", "--no-fund", "--no-save", FES_PACKAGE]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
        assert result.returncode == 0, f"npm install {FES_PACKAGE} failed:\n{result.stdout}\n{result.stderr}"
    return FES_ESM


def serve_test_pages(page: Page, origin: str) -> None:
    """Answer `{origin}/__test__/...` from the example snippet and the npm package, in the browser."""
    esm = install_fetch_event_source()
    modules = sorted(path.stem for path in esm.glob("*.js"))
    files = {f"{TEST_PREFIX}fes/{name}.js": esm / f"{name}.js" for name in modules}
    files[f"{TEST_PREFIX}fetch-event-source.js"] = EXAMPLE
    import_map = {f"{TEST_PREFIX}fes/{name}": f"{TEST_PREFIX}fes/{name}.js" for name in modules}
    import_map["@microsoft/fetch-event-source"] = f"{TEST_PREFIX}fes/index.js"
    pages = {
        FES_PAGE: _FES_PAGE.replace("IMPORT_MAP", json.dumps({"imports": import_map})),
        EVENTSOURCE_PAGE: _EVENTSOURCE_PAGE,
    }

    def handle(route: Route) -> None:
        path = route.request.url.removeprefix(origin).split("?")[0]
        if path in pages:
            route.fulfill(status=200, content_type="text/html; charset=utf-8", body=pages[path])
        elif path in files:
            route.fulfill(status=200, content_type="text/javascript; charset=utf-8", body=files[path].read_text())
        else:
            route.fulfill(status=404, body="not a test file")

    page.route(f"{origin}{TEST_PREFIX}**", handle)


# window.runAsk(query, key) calls the README's `ask` and leaves the outcome in window.outcome.
_FES_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>fetch-event-source consumer</title>
<link rel="icon" href="data:,">
<script type="importmap">IMPORT_MAP</script>
<script type="module">
import { ask } from "/__test__/fetch-event-source.js";
window.texts = [];
window.runAsk = (query, apiKey) => {
  window.outcome = undefined;
  ask(query, apiKey, { onText: (text) => window.texts.push(text) }).then(
    (text) => { window.outcome = { ok: true, text }; },
    (error) => { window.outcome = { ok: false, name: error.constructor.name, message: error.message }; },
  );
};
window.ready = true;
</script>
</head>
<body><p>fetch-event-source consumer</p></body>
</html>
"""


# window.start(query, key) starts a run with POST /runs and reads it with the browser's own
# EventSource, which reconnects by itself with Last-Event-ID; the outcome lands in window.outcome.
# The service's `error` event and EventSource's own connection errors share the name "error": only
# the service's carries data.
_EVENTSOURCE_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>EventSource consumer</title>
<link rel="icon" href="data:,">
<script type="module">
window.texts = [];
window.ids = [];
window.opens = 0;
window.start = async (query, apiKey) => {
  const response = await fetch("/runs", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ query, api_key: apiKey }),
  });
  const { events_url: url } = await response.json();
  const source = new EventSource(url);
  source.onopen = () => { window.opens += 1; };
  source.addEventListener("data", (event) => {
    window.ids.push(event.lastEventId);
    window.texts.push(JSON.parse(event.data));
  });
  source.addEventListener("end", () => {
    source.close();
    window.outcome = { ok: true, text: window.texts.join("") };
  });
  source.addEventListener("error", (event) => {
    if (event.data === undefined) return;  // a dropped connection: EventSource reconnects by itself
    source.close();
    window.outcome = { ok: false, error: JSON.parse(event.data) };
  });
};
window.ready = true;
</script>
</head>
<body><p>EventSource consumer</p></body>
</html>
"""


@contextmanager
def new_page(browser: Browser, timeout_ms: int) -> Iterator[Page]:
    """A page in a fresh browser context (no shared cookies or storage), closed afterwards."""
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(timeout_ms)
    try:
        yield page
    finally:
        context.close()


@dataclass
class BrowserLog:
    """What the browser reported as going wrong: console errors, failed requests, HTTP errors."""

    console_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    error_responses: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)  # "METHOD url" of each request that ended, however

    @property
    def problems(self) -> list[str]:
        return self.console_errors + self.failed_requests + self.error_responses


def watch_browser_log(page: Page) -> BrowserLog:
    """Record the page's console errors, uncaught exceptions, failed requests and 4xx/5xx responses."""
    log = BrowserLog()

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            log.console_errors.append(f"console: {message.text}")

    def on_failed(request: Request) -> None:
        log.failed_requests.append(f"failed: {request.method} {request.url} ({request.failure})")
        log.finished.append(f"{request.method} {request.url}")

    def on_response(response: Response) -> None:
        if response.status >= 400:
            log.error_responses.append(f"HTTP {response.status}: {response.request.method} {response.url}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: log.console_errors.append(f"uncaught: {error}"))
    page.on("requestfailed", on_failed)
    page.on("requestfinished", lambda request: log.finished.append(f"{request.method} {request.url}"))
    page.on("response", on_response)
    return log
