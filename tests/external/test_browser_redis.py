"""A connection cut mid-answer in Chromium, with two service processes behind nginx's round-robin
sharing one Redis: the reconnect lands on the other process, and the answer still arrives whole,
once, from one generation.

Chromium -> severable proxy (the test cuts it) -> nginx (deploy/nginx.conf, two upstreams) -> two
services. The test pages are served by Playwright, so the only requests nginx sees are the API's:
round-robin sends the reconnect to the process that did not start the run.
"""

from typing import Any

import pytest
from playwright.sync_api import Page

from service.demo_model import Behaviour, DemoModelServer, expected_text
from tests.conftest import LiveFactory, LiveService
from tests.support.browser import EVENTSOURCE_PAGE, FES_PAGE, serve_test_pages
from tests.support.nginx import AS_SHIPPED, nginx_in_front
from tests.support.tcp_proxy import severable_proxy
from tests.support.waiting import wait_until

QUERY = "What happens when the network drops?"
KEY = "sk-resume-redis-SENTINEL-3d1f"
BEHAVIOUR = Behaviour(tokens=150, token_delay=0.02, first_token_delay=0.0)


def services(live_service: LiveFactory, redis_url: str) -> tuple[LiveService, LiveService]:
    options: dict[str, Any] = {"resume_grace": 15.0, "store_url": redis_url}
    return live_service(**options), live_service(**options)


def run_on(page: Page, url: str, path: str, start: str, proxy: Any) -> Any:
    serve_test_pages(page, proxy.url)
    page.goto(f"{proxy.url}{path}")
    page.wait_for_function("window.ready === true")
    page.evaluate(f"([query, key]) => window.{start}(query, key)", [QUERY, KEY])
    page.wait_for_function("window.texts.length >= 5")
    assert proxy.sever() >= 1, "no connection was open to cut"
    page.wait_for_function("window.outcome !== undefined")
    return page.evaluate("window.outcome")


@pytest.mark.parametrize(("path", "start"), [(EVENTSOURCE_PAGE, "start"), (FES_PAGE, "runAsk")])
def test_a_cut_stream_resumes_through_nginx_on_the_other_process(
    page: Page, live_service: LiveFactory, upstream_server: DemoModelServer, redis_url: str, path: str, start: str
) -> None:
    upstream_server.behaviour = BEHAVIOUR
    a, b = services(live_service, redis_url)
    with nginx_in_front(a.url, AS_SHIPPED, b.url) as front, severable_proxy(front) as proxy:
        outcome = run_on(page, front, path, start, proxy)
        texts: list[str] = page.evaluate("window.texts")
    assert outcome == {"ok": True, "text": expected_text(QUERY, BEHAVIOUR)}
    assert "".join(texts) == outcome["text"], "text was shown twice or lost"
    assert len(upstream_server.requests) == 1, "the reconnect started a second generation"
    owners = [service for service in (a, b) if any(True for _ in service.state.runs.local)]
    assert len(owners) == 1, "exactly one process generated the run"
    other = b if owners[0] is a else a
    assert other.state.runs.follower.handed > 0, "no event reached the browser through the other process"  # type: ignore[attr-defined]
    for service in (a, b):
        idle(service)


def idle(service: LiveService) -> None:
    wait_until(lambda: service.state.threads.busy == 0, 10, "the pool to be idle")
