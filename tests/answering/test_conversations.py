"""Multi-turn chat: server-issued conversation ids, earlier turns in the prompt, only completed turns kept."""

import logging
from functools import partial
from types import SimpleNamespace
from typing import Any, cast

import pytest

from service.answering.answers import Answer
from service.answering.conversations import ID_PATTERN, Conversations
from service.demo_model import Behaviour, DemoModelServer, expected_text
from service.store.redis_loop_conversations import LoopRedisConversationStore
from service.streaming.run import PipelineFactory, Run
from tests.conftest import LiveFactory, LiveService
from tests.support.redis_contents import everything_in
from tests.support.redis_server import RedisServer
from tests.support.sse import parse_sse, text_of
from tests.support.streams import LiveStream
from tests.support.waiting import wait_until

KEY = "sk-conversations-SENTINEL-7d1f"
FAST = Behaviour(tokens=None, first_token_delay=0.0, token_delay=0.0)


def ask(service: LiveService, query: str, conversation_id: str) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """One streamed turn: (metadata, text, end)."""
    response = service.client.post("/chat", json={"query": query, "api_key": KEY, "conversation_id": conversation_id})
    assert response.status_code == 200, response.text
    events = parse_sse(response.text).events
    assert events[-1].event == "end", events[-1]
    return events[0].json(), text_of(events), events[-1].json()


def history(service: LiveService, conversation_id: str) -> list[dict[str, str]]:
    response = service.client.get(f"/conversations/{conversation_id}")
    assert response.status_code == 200, response.text
    messages: list[dict[str, str]] = response.json()["messages"]
    return messages


# Through the service, on either conversation store.


@pytest.fixture(params=["memory", "redis"])
def start(request: pytest.FixtureRequest, live_service: LiveFactory) -> LiveFactory:
    """`live_service` with HAYSTREAM_STORE_URL memory:// or a real redis-server's (emptied first)."""
    url = request.getfixturevalue("redis_url") if request.param == "redis" else "memory://"
    return partial(live_service, store_url=url)


def test_a_follow_up_is_answered_with_the_earlier_turn_in_the_prompt(
    start: LiveFactory, upstream_server: DemoModelServer
) -> None:
    """Regression: the turn was stored after the response closed, so a follow-up sent on `end` missed it."""
    upstream_server.behaviour = FAST
    service = start()
    first_meta, first_text, _ = ask(service, "My name is Ada {{ 7*7 }}.", "new")
    conversation_id = first_meta["conversation_id"]
    assert ID_PATTERN.fullmatch(conversation_id)
    assert first_meta["history_turns"] == 0
    assert upstream_server.requests[0].prompt == "My name is Ada {{ 7*7 }}."  # no history: the query alone

    second_meta, _, _ = ask(service, "What is my name?", conversation_id)
    assert second_meta["conversation_id"] == conversation_id
    assert second_meta["history_turns"] == 1
    prompt = upstream_server.requests[1].prompt
    # The earlier turn, literally (history is data, never template), then the new question last.
    assert "user: My name is Ada {{ 7*7 }}." in prompt
    assert f"assistant: {first_text}" in prompt
    assert prompt.endswith("user: What is my name?")
    assert history(service, conversation_id) == [
        {"role": "user", "content": "My name is Ada {{ 7*7 }}."},
        {"role": "assistant", "content": first_text},
        {"role": "user", "content": "What is my name?"},
        {"role": "assistant", "content": expected_text(prompt, FAST)},
    ]
    assert KEY not in str(history(service, conversation_id))


def test_an_unknown_id_starts_a_new_conversation_under_a_fresh_id(
    start: LiveFactory, upstream_server: DemoModelServer
) -> None:
    upstream_server.behaviour = FAST
    service = start()
    unknown = "conv_" + "x" * 32
    metadata, _, _ = ask(service, "Hello?", unknown)
    assert metadata["conversation_id"] != unknown and metadata["history_turns"] == 0
    assert service.client.get(f"/conversations/{unknown}").status_code == 404
    assert len(history(service, metadata["conversation_id"])) == 2


@pytest.mark.parametrize("bad", ["conv_short", "../etc", "conv_" + "a" * 31 + "!", "NEW", ""])
def test_a_malformed_conversation_id_is_refused(start: LiveFactory, bad: str) -> None:
    service = start()
    response = service.client.post("/chat", json={"query": "q", "api_key": KEY, "conversation_id": bad})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "conversation_id"


def test_a_failed_turn_is_not_stored(start: LiveFactory, upstream_server: DemoModelServer) -> None:
    upstream_server.behaviour = FAST
    service = start()
    conversation_id = ask(service, "First question", "new")[0]["conversation_id"]
    upstream_server.behaviour = Behaviour(tokens=5, first_token_delay=0.0, token_delay=0.0, fault="close_mid")
    body = {"query": "Second question", "api_key": KEY, "conversation_id": conversation_id}
    events = parse_sse(service.client.post("/chat", json=body).text).events
    assert events[-1].event == "error"
    assert [m["content"] for m in history(service, conversation_id)][::2] == ["First question"]


def test_a_cancelled_turn_is_not_stored(start: LiveFactory, upstream_server: DemoModelServer) -> None:
    upstream_server.behaviour = FAST
    service = start()
    conversation_id = ask(service, "First question", "new")[0]["conversation_id"]
    upstream_server.behaviour = Behaviour(tokens=400, first_token_delay=0.0, token_delay=0.02)
    body = {"query": "Second question", "api_key": KEY, "conversation_id": conversation_id}
    with LiveStream(service.client, body) as stream:
        assert stream.next_event().event == "metadata"  # type: ignore[union-attr]
        assert stream.next_event().event == "data"  # type: ignore[union-attr]
    record = upstream_server.wait_for_requests(2)[1]
    assert record.closed.wait(10)
    wait_until(lambda: service.state.admission.active == 0, 10, "the cancelled run to be released")
    assert len(history(service, conversation_id)) == 2


def test_a_conversation_can_be_read_and_deleted(start: LiveFactory, upstream_server: DemoModelServer) -> None:
    upstream_server.behaviour = FAST
    service = start()
    conversation_id = ask(service, "Remember me", "new")[0]["conversation_id"]
    assert len(history(service, conversation_id)) == 2
    assert service.client.delete(f"/conversations/{conversation_id}").status_code == 204
    missing = service.client.get(f"/conversations/{conversation_id}")
    assert missing.status_code == 404 and missing.json()["type"] == "not_found"
    assert service.client.delete(f"/conversations/{conversation_id}").status_code == 404
    # The next turn with the deleted id starts afresh: nothing of the old one reaches the model.
    metadata, _, _ = ask(service, "Who am I?", conversation_id)
    assert metadata["history_turns"] == 0 and metadata["conversation_id"] != conversation_id
    assert "Remember me" not in upstream_server.requests[-1].prompt


def test_conversations_in_memory_are_bounded_by_settings(
    live_service: LiveFactory, upstream_server: DemoModelServer
) -> None:
    upstream_server.behaviour = FAST
    service = live_service(max_conversations=2, conversation_max_messages=2)
    ids = [ask(service, f"Question {n}", "new")[0]["conversation_id"] for n in range(3)]
    assert service.client.get(f"/conversations/{ids[0]}").status_code == 404
    ask(service, "Follow-up", ids[2])
    assert [m["content"] for m in history(service, ids[2])][::2] == ["Follow-up"]
    assert service.client.get(f"/conversations/{ids[1]}").status_code == 200


def test_conversations_in_redis_expire_after_the_ttl_unused(
    live_service: LiveFactory, upstream_server: DemoModelServer, redis_url: str
) -> None:
    upstream_server.behaviour = FAST
    service = live_service(store_url=redis_url, conversation_ttl=0.5, conversation_max_messages=2)
    conversation_id = ask(service, "Question", "new")[0]["conversation_id"]
    ask(service, "Follow-up", conversation_id)
    assert [m["content"] for m in history(service, conversation_id)][::2] == ["Follow-up"]
    wait_until(lambda: service.client.get(f"/conversations/{conversation_id}").status_code == 404, 10, "the TTL")


def test_redis_holds_the_turns_but_never_the_key(
    live_service: LiveFactory, upstream_server: DemoModelServer, redis_url: str
) -> None:
    upstream_server.behaviour = FAST
    service = live_service(store_url=redis_url)
    conversation_id = ask(service, "My name is Ada.", "new")[0]["conversation_id"]
    ask(service, "What is my name?", conversation_id)
    held = everything_in(redis_url)
    assert b"My name is Ada." in held and conversation_id.encode() in held
    assert KEY.encode() not in held and b"SENTINEL" not in held


async def test_a_turn_the_lost_store_cannot_take_is_logged_and_the_answer_still_ends(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The client has its whole answer by then: it gets `end`; the conversation misses the turn, said in the log."""
    conversations = Conversations(LoopRedisConversationStore(own_redis.url, ttl=60, max_messages=10))
    conversation = await conversations.open("new")
    answer = Answer(cast(PipelineFactory, None), {}, query="q", conversation=conversation, conversations=conversations)
    own_redis.stop()
    with caplog.at_level(logging.WARNING, logger="service.answering"):
        await answer.finished(cast(Run, SimpleNamespace(reply="a")))
    assert [record.getMessage() for record in caplog.records] == ["turn not stored"]
    await conversations.close()
