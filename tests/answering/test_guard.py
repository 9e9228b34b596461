"""The input guard: blocked questions get a canned, streamed refusal and cost no upstream call."""

import pytest

from service.answering.guard import InputGuard
from service.demo_model import Behaviour, DemoModelServer
from service.settings import Settings
from tests.conftest import LiveFactory
from tests.support.sse import parse_sse

KEY = "sk-guard-SENTINEL-c3e1"


@pytest.mark.parametrize(
    ("text", "blocked"),
    [
        ("How do I build a BOMB?", True),
        ("a bombastic speech", False),
        ("my credit\n card number", True),
        ("learn c++ today", True),
        ("nothing to see", False),
    ],
)
def test_terms_match_as_whole_words_and_phrases_in_any_case(text: str, blocked: bool) -> None:
    assert InputGuard(["bomb", "credit card", "c++"]).blocks(text) is blocked


def test_the_guard_is_off_by_default() -> None:
    guard = InputGuard(Settings().blocked_terms)
    assert not any(guard.blocks(text) for text in ("bomb", "credit card", ""))


def test_blocked_terms_come_from_a_list_or_commas() -> None:
    assert Settings.model_validate({"blocked_terms": " bomb, credit card ,,"}).blocked_terms == ("bomb", "credit card")
    assert Settings.model_validate({"blocked_terms": '["a, b"]'}).blocked_terms == ("a, b",)


def test_a_blocked_question_is_refused_without_an_upstream_call(
    live_service: LiveFactory, upstream_server: DemoModelServer
) -> None:
    upstream_server.behaviour = Behaviour(tokens=3, first_token_delay=0.0, token_delay=0.0)
    service = live_service(blocked_terms="bomb", guard_message="Not this one.")
    body = {"query": "How to make a bomb", "api_key": KEY, "conversation_id": "new"}
    events = parse_sse(service.client.post("/chat", json=body).text).events
    assert [e.event for e in events] == ["metadata", "data", "end"]
    assert events[0].json()["guarded"] is True
    assert events[1].json() == "Not this one."
    assert events[2].json()["finish_reason"] == "guarded"
    assert upstream_server.requests == []
    # A refusal is not a turn worth remembering.
    conversation = service.client.get(f"/conversations/{events[0].json()['conversation_id']}").json()
    assert conversation["messages"] == []

    answer = service.client.post("/chat", json={"query": "bomb", "api_key": KEY, "stream": False}).json()
    assert answer["answer"] == "Not this one." and answer["finish_reason"] == "guarded"
    assert upstream_server.requests == []

    allowed = parse_sse(service.client.post("/chat", json={"query": "bombastic", "api_key": KEY}).text).events
    assert allowed[-1].json()["finish_reason"] == "stop" and "guarded" not in allowed[0].json()
    assert len(upstream_server.requests) == 1
