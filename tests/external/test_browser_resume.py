"""A connection cut mid-answer, in a real browser: the answer still arrives whole, once, from one generation.

Chromium talks to the service through a loopback proxy the test severs (`tests/support/tcp_proxy.py`),
as a dropping network would. Two consumers: the browser's native `EventSource` on the runs API
(it reconnects by itself, sending `Last-Event-ID`), and the README's fetch-event-source snippet
on `POST /chat` (it re-POSTs with `Last-Event-ID` and its `Idempotency-Key`).
"""

from typing import Any

from playwright.sync_api import Page

from service.demo_model import Behaviour, DemoModelServer, expected_text
from tests.conftest import LiveFactory
from tests.support.browser import EVENTSOURCE_PAGE, FES_PAGE, serve_test_pages
from tests.support.tcp_proxy import severable_proxy
from tests.support.waiting import wait_until

QUERY = "What happens when the network drops?"
KEY = "sk-resume-SENTINEL-5b2e"
BEHAVIOUR = Behaviour(tokens=150, token_delay=0.02, first_token_delay=0.0)


def cut_mid_answer(page: Page, proxy: Any) -> None:
    page.wait_for_function("window.texts.length >= 5")
    assert proxy.sever() >= 1, "no connection was open to cut"


def test_native_eventsource_resumes_after_a_cut(
    page: Page, live_service: LiveFactory, upstream_server: DemoModelServer
) -> None:
    upstream_server.behaviour = BEHAVIOUR
    service = live_service(resume_grace=15.0)
    with severable_proxy(service.url) as proxy:
        serve_test_pages(page, proxy.url)
        page.goto(f"{proxy.url}{EVENTSOURCE_PAGE}")
        page.wait_for_function("window.ready === true")
        page.evaluate("([query, key]) => window.start(query, key)", [QUERY, KEY])
        cut_mid_answer(page, proxy)
        page.wait_for_function("window.outcome !== undefined")
        outcome = page.evaluate("window.outcome")
        ids: list[str] = page.evaluate("window.ids")
        opens = page.evaluate("window.opens")

    assert outcome == {"ok": True, "text": expected_text(QUERY, BEHAVIOUR)}
    assert len(ids) == len(set(ids)), "an event arrived twice"
    assert opens >= 2, "EventSource never reconnected: the cut did not happen mid-answer"
    assert len(upstream_server.requests) == 1, "the reconnect started a second generation"
    wait_until(lambda: service.state.threads.busy == 0, 10, "the pool to be idle")


def test_fetch_event_source_resumes_after_a_cut(
    page: Page, live_service: LiveFactory, upstream_server: DemoModelServer
) -> None:
    upstream_server.behaviour = BEHAVIOUR
    service = live_service(resume_grace=15.0)
    with severable_proxy(service.url) as proxy:
        serve_test_pages(page, proxy.url)
        posts: list[str] = []
        page.on("request", lambda request: posts.append(request.url) if request.method == "POST" else None)
        page.goto(f"{proxy.url}{FES_PAGE}")
        page.wait_for_function("window.ready === true")
        page.evaluate("([query, key]) => window.runAsk(query, key)", [QUERY, KEY])
        cut_mid_answer(page, proxy)
        page.wait_for_function("window.outcome !== undefined")
        outcome = page.evaluate("window.outcome")
        texts: list[str] = page.evaluate("window.texts")

    assert outcome == {"ok": True, "text": expected_text(QUERY, BEHAVIOUR)}
    assert "".join(texts) == outcome["text"], "text was shown twice or lost"
    assert len(posts) >= 2 and set(posts) == {f"{proxy.url}/chat"}, posts
    assert len(upstream_server.requests) == 1, "the re-POST started a second generation"
    wait_until(lambda: service.state.threads.busy == 0, 10, "the pool to be idle")
