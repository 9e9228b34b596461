"""The chat page as a chat, in a real browser: a transcript, Markdown rendered safely, a plain status.

Answers come from the demo model, which echoes the question back, or, where an answer needs the
line breaks the echo collapses (lists, code blocks), from a canned event stream that the browser
itself serves for `/chat` (request interception), read by the page's own client as usual.
"""

import json

from playwright.sync_api import Page

from service.demo_model import Behaviour, DemoModelServer, expected_text
from tests.conftest import LiveFactory
from tests.support.browser import watch_browser_log

KEY = "sk-chat-page-SENTINEL-7c41"
HOSTILE = '<script>window.pwned=1</script> <img src=x onerror="window.pwned=1">'
CODE = "print('hi <b>')\n"
# Split mid-word and mid-fence, so the page renders incomplete Markdown on the way.
MARKDOWN_CHUNKS = ["Steps:\n\n- first", " item\n- second item\n\n```py", f"thon\n{CODE}", "```\n"]

# The status texts the page shows, in order, from before the question is sent.
OBSERVE_STATUS = """() => {
  window.statuses = [];
  const status = document.getElementById("status");
  new MutationObserver(() => window.statuses.push(status.textContent))
    .observe(status, { subtree: true, childList: true, characterData: true });
}"""


def open_page(page: Page, origin: str) -> None:
    page.goto(f"{origin}/")
    page.fill("#api-key", KEY)


def ask(page: Page, query: str) -> None:
    """Send a question and wait for its answer to end; the box must be empty once it is sent."""
    page.fill("#query", query)
    page.click("#send")
    assert page.input_value("#query") == ""
    page.wait_for_selector('#status[data-state="done"]')


def turns(page: Page) -> list[list[str]]:
    """[question, answer text] of each turn in the transcript, top to bottom."""
    script = """turns => turns.map(turn => [
      turn.querySelector(".question").textContent, turn.querySelector(".answer").textContent.trim(),
    ])"""
    result: list[list[str]] = page.eval_on_selector_all("#transcript .turn", script)
    return result


def canned_stream(chunks: list[str]) -> str:
    events = ['event: metadata\ndata: {"run_id": "run_canned"}\n\n']
    events += [f"event: data\ndata: {json.dumps(chunk)}\n\n" for chunk in chunks]
    events.append(f'event: end\ndata: {{"chunks": {len(chunks)}}}\n\n')
    return "".join(events)


def test_the_transcript_keeps_every_question_and_answer_in_order(
    page: Page, live_service: LiveFactory, upstream_server: DemoModelServer
) -> None:
    """Regression: each question wiped the previous answer, and the box kept the question sent."""
    service = live_service()
    open_page(page, service.url)
    ask(page, "First question?")
    first = expected_text("First question?", upstream_server.behaviour).strip()
    upstream_server.behaviour = Behaviour(tokens=400, token_delay=0, first_token_delay=0)
    ask(page, "Second question?")
    second = expected_text("", upstream_server.behaviour).strip()
    assert turns(page) == [["First question?", first], ["Second question?", second]]
    height, visible, top = page.eval_on_selector("#transcript", "t => [t.scrollHeight, t.clientHeight, t.scrollTop]")
    assert height > visible, "the answers should overflow the transcript for this check to mean anything"
    assert top + visible >= height - 2, "the latest answer is not scrolled into view"


def test_markdown_answers_render_lists_and_code_blocks_with_a_copy_button(
    page: Page, live_service: LiveFactory
) -> None:
    service = live_service()
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=service.url)
    body = canned_stream(MARKDOWN_CHUNKS)
    page.route(
        f"{service.url}/chat",
        lambda route: route.fulfill(status=200, headers={"content-type": "text/event-stream"}, body=body),
    )
    open_page(page, service.url)
    ask(page, "How do I print?")
    items = page.eval_on_selector_all("#transcript .answer li", "items => items.map(item => item.textContent)")
    assert items == ["first item", "second item"]
    assert page.text_content("#transcript .answer pre > code") == CODE
    assert page.get_attribute("#transcript .answer pre > code", "class") == "language-python"
    page.click("#transcript .answer .copy")
    page.wait_for_selector("#transcript .answer .copy >> text=Copied")
    assert page.evaluate("navigator.clipboard.readText()") == CODE


def test_html_in_a_question_or_its_answer_stays_text(
    page: Page, live_service: LiveFactory, upstream_server: DemoModelServer
) -> None:
    """The demo model echoes the question, so the answer brings the HTML back: both must show as text,
    and no element (no <script>, no <img onerror>) may be made from them."""
    service = live_service()
    log = watch_browser_log(page)
    open_page(page, service.url)
    ask(page, HOSTILE)
    ((question, answer),) = turns(page)
    assert question == HOSTILE
    assert HOSTILE in answer and answer == expected_text(HOSTILE, upstream_server.behaviour).strip()
    assert page.evaluate("typeof window.pwned") == "undefined"
    made = "#transcript script, #transcript img, #transcript [onerror]"
    assert page.eval_on_selector_all(made, "found => found.length") == 0
    assert log.problems == []  # a blocked inline handler or an <img src=x> request would show here


def test_the_status_speaks_plainly_and_new_conversation_clears_it_with_the_transcript(
    page: Page, live_service: LiveFactory, upstream_server: DemoModelServer
) -> None:
    """Regression: the status ended on "Done: 60 chunks.", and New conversation left it (and the last
    answer) on screen."""
    upstream_server.behaviour = Behaviour(tokens=3, token_delay=0.01, first_token_delay=0)
    service = live_service()
    open_page(page, service.url)
    page.evaluate(OBSERVE_STATUS)
    ask(page, "Hello?")
    statuses: list[str] = page.evaluate("window.statuses")
    assert statuses[-1] == "Answer complete."
    assert not any("chunk" in status for status in statuses), statuses
    page.click("#new-conversation")
    assert page.get_attribute("#status", "data-state") == "idle"
    assert page.text_content("#status") == "Ask a question."
    assert page.text_content("#conversation") == "New conversation."
    assert turns(page) == []
