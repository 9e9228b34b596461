"""The real consumers in a real browser: the chat page, and the README's fetch-event-source snippet.

Headless Chromium loads pages from a live service (and, where parametrised, through nginx running
the reference config). What the page shows while streaming is recorded by a MutationObserver in
the page, so "text appeared before the end" is an observation of the DOM, not a timing.
"""

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from playwright.sync_api import Page

from service.demo_model import Behaviour, DemoModelServer, expected_text
from service.serving import DEMO_NOTICE
from service.store.conversations import InPlace, MemoryConversationStore
from tests.conftest import LiveFactory, LiveService
from tests.support.browser import FES_PAGE, serve_test_pages, watch_browser_log
from tests.support.nginx import nginx_in_front
from tests.support.waiting import wait_until

QUERY = "What is streaming?"
KEY = "sk-browser-SENTINEL-31d9"

Started = tuple[LiveService, str]  # the service, and the origin the browser talks to
Starter = Callable[..., Started]

LAST_ANSWER = "#transcript .turn:last-child .answer"

# Records (state, latest answer's length) on every change of the page, from before the question is sent.
OBSERVE = f"""() => {{
  window.observed = [];
  const status = document.getElementById("status");
  const record = () => {{
    const answer = document.querySelector("{LAST_ANSWER}");
    window.observed.push([status.dataset.state, answer ? answer.textContent.length : 0]);
  }};
  new MutationObserver(record).observe(document.body, {{
    subtree: true, childList: true, characterData: true, attributes: true,
  }});
}}"""


@pytest.fixture(params=["direct", "nginx"])
def start(request: pytest.FixtureRequest, live_service: LiveFactory) -> Iterator[Starter]:
    """Start the service; the browser talks to it directly or through nginx (deploy/nginx.conf)."""
    with ExitStack() as stack:

        def started(**settings: Any) -> Started:
            service = live_service(**settings)
            if request.param == "direct":
                return service, service.url
            return service, stack.enter_context(nginx_in_front(service.url))

        yield started


def ask_on_the_page(page: Page, origin: str, query: str = QUERY) -> None:
    page.goto(f"{origin}/")
    page.fill("#query", query)
    page.fill("#api-key", KEY)
    page.evaluate(OBSERVE)
    page.click("#send")


def wait_for_state(page: Page, state: str) -> None:
    page.wait_for_selector(f'#status[data-state="{state}"]')


def test_the_page_shows_the_answer_growing_then_the_exact_text(
    page: Page, start: Starter, upstream_server: DemoModelServer
) -> None:
    upstream_server.behaviour = Behaviour(token_delay=0.03, first_token_delay=0.1)
    _, origin = start(demo=True)
    ask_on_the_page(page, origin)
    wait_for_state(page, "done")
    answer = (page.text_content(LAST_ANSWER) or "").strip()
    assert answer == expected_text(QUERY, upstream_server.behaviour)
    observed: list[tuple[str, int]] = [tuple(entry) for entry in page.evaluate("window.observed")]
    states = [state for state, _ in observed]
    assert states.index("waiting") < states.index("streaming") < states.index("done"), observed
    partial = [length for state, length in observed if state == "streaming" and 0 < length < len(answer)]
    assert partial, f"no partial answer was ever shown: {observed}"
    assert page.text_content("#notice") == DEMO_NOTICE
    assert page.is_enabled("#send") and not page.is_enabled("#stop")


@pytest.mark.parametrize("resume_grace", [0, 60])
def test_stop_ends_the_run_with_nothing_failed_in_the_browser(
    page: Page, start: Starter, upstream_server: DemoModelServer, resume_grace: float
) -> None:
    """Regression: Stop aborted the request, then sent DELETE /runs/{id}; the abort often ended the run
    first, so the DELETE got a 404 and the console logged it. Stop is now the DELETE alone: the stream
    ends with the run's `cancelled` event, at once even when a resume grace would keep an abandoned
    run going, and the browser reports no failed request and no console error."""
    upstream_server.behaviour = Behaviour(tokens=400, token_delay=0.05, first_token_delay=0)
    service, origin = start(chat_resume_grace=resume_grace)
    log = watch_browser_log(page)
    ask_on_the_page(page, origin)
    wait_for_state(page, "streaming")
    with page.expect_response(lambda response: response.request.method == "DELETE") as deleted:
        page.click("#stop")
    wait_for_state(page, "stopped")
    assert "/runs/run_" in deleted.value.url and deleted.value.status == 204
    assert "tok0" in (page.text_content(LAST_ANSWER) or "")
    (record,) = upstream_server.wait_for_requests(1)
    assert record.closed.wait(5), "the upstream connection stayed open after Stop"
    assert record.client_gone and not record.completed
    wait_until(lambda: service.state.admission.active == 0, message="the run to be released")
    wait_until(lambda: f"POST {origin}/chat" in log.finished, message="the page's POST /chat to end")
    assert log.problems == []


def test_the_page_shows_an_error_event_with_its_message(
    page: Page, live_service: LiveFactory, upstream_server: DemoModelServer
) -> None:
    upstream_server.behaviour = Behaviour(fault="http_401")
    service = live_service()
    ask_on_the_page(page, service.url)
    wait_for_state(page, "error")
    assert page.text_content("#status") == "The upstream refused the API key (401)."
    assert KEY not in page.content()


def test_the_page_shows_a_refusal_before_the_stream(page: Page, live_service: LiveFactory) -> None:
    service = live_service(max_query_chars=5)
    ask_on_the_page(page, service.url, query="far too long")
    wait_for_state(page, "error")
    assert page.text_content("#status") == "query: must be at most 5 characters"


def test_the_page_reports_a_stream_that_ends_without_end_as_incomplete(page: Page, live_service: LiveFactory) -> None:
    service = live_service()
    truncated = 'id: 0\nevent: metadata\ndata: {"run_id": "run_t"}\n\nid: 1\nevent: data\ndata: "Half an"\n\n'
    page.route(
        f"{service.url}/chat",
        lambda route: route.fulfill(status=200, headers={"content-type": "text/event-stream"}, body=truncated),
    )
    ask_on_the_page(page, service.url)
    wait_for_state(page, "error")
    assert page.text_content("#status") == "The stream ended before the answer was complete."
    assert (page.text_content(LAST_ANSWER) or "").strip() == "Half an"


def run_snippet(page: Page, origin: str, query: str = QUERY) -> tuple[dict[str, Any], list[str]]:
    """Load the fetch-event-source page, call the README's `ask`, return its outcome and the POSTs."""
    serve_test_pages(page, origin)
    posts: list[str] = []
    page.on("request", lambda request: posts.append(request.url) if request.method == "POST" else None)
    page.goto(f"{origin}{FES_PAGE}")
    page.wait_for_function("window.ready === true")
    page.evaluate("([query, key]) => window.runAsk(query, key)", [query, KEY])
    # A snippet that let fetch-event-source retry would never settle: this wait would fail.
    page.wait_for_function("window.outcome !== undefined")
    outcome: dict[str, Any] = page.evaluate("window.outcome")
    return outcome, posts


def test_fetch_event_source_gets_the_exact_text_with_one_post(
    page: Page, start: Starter, upstream_server: DemoModelServer
) -> None:
    _, origin = start()
    outcome, posts = run_snippet(page, origin)
    assert outcome == {"ok": True, "text": expected_text(QUERY, upstream_server.behaviour)}
    assert "".join(page.evaluate("window.texts")) == outcome["text"]
    assert posts == [f"{origin}/chat"]
    assert len(upstream_server.requests) == 1


def test_fetch_event_source_treats_an_error_event_as_fatal_without_retrying(
    page: Page, live_service: LiveFactory, upstream_server: DemoModelServer
) -> None:
    upstream_server.behaviour = Behaviour(fault="http_401")
    service = live_service()
    outcome, posts = run_snippet(page, service.url)
    expected = {"ok": False, "name": "FatalError", "message": "The upstream refused the API key (401)."}
    assert outcome == expected
    # fetch-event-source retries only while the promise is pending; it has settled, so this is final.
    assert posts == [f"{service.url}/chat"]
    assert len(upstream_server.requests) == 1


def test_fetch_event_source_treats_a_refusal_before_the_stream_as_fatal(
    page: Page, live_service: LiveFactory, upstream_server: DemoModelServer
) -> None:
    service = live_service(max_query_chars=5)
    outcome, posts = run_snippet(page, service.url, query="far too long")
    assert outcome == {"ok": False, "name": "FatalError", "message": "query: must be at most 5 characters"}
    assert posts == [f"{service.url}/chat"]
    assert upstream_server.requests == []


def test_a_follow_up_on_the_page_continues_the_conversation_until_new_conversation(
    page: Page, live_service: LiveFactory, upstream_server: DemoModelServer
) -> None:
    upstream_server.behaviour = Behaviour(tokens=3, token_delay=0, first_token_delay=0)
    service = live_service()
    ask_on_the_page(page, service.url, query="My name is Ada.")
    wait_for_state(page, "done")
    assert page.get_attribute("#conversation", "data-turns") == "1"
    page.fill("#query", "What is my name?")
    page.click("#send")
    page.wait_for_selector('#conversation[data-turns="2"]')
    wait_for_state(page, "done")
    follow_up = upstream_server.requests[1].prompt
    assert "user: My name is Ada." in follow_up and follow_up.endswith("user: What is my name?")
    assert page.text_content("#conversation") == "Conversation: 2 earlier turns remembered."

    page.click("#new-conversation")
    page.fill("#query", "Who am I?")
    page.click("#send")
    page.wait_for_selector('#conversation[data-turns="1"]')
    wait_for_state(page, "done")
    assert upstream_server.requests[2].prompt == "Who am I?"
    in_place = service.state.answers.conversations.store
    assert isinstance(in_place, InPlace) and isinstance(in_place.store, MemoryConversationStore)
    assert len(in_place.store) == 2
