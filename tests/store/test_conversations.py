"""The conversation stores, memory and Redis, held to one suite: the ChatMessageStore protocol and Conversations.

The Redis runs are against a real redis-server (tests/support/redis_server.py), emptied before each test.
Backend-specific bounds follow: least recently used out (memory), a time to live renewed on use (Redis).
"""

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from haystack.dataclasses import ChatMessage
from haystack.utils import Secret
from haystack_experimental.chat_message_stores.types import ChatMessageStore

from service.answering.conversations import ID_PATTERN, Conversations
from service.errors import StoreUnavailable
from service.store.conversations import ConversationStore, InPlace, LoopConversationStore, MemoryConversationStore
from service.store.redis_conversation_format import CONNECT_TIMEOUT
from service.store.redis_conversations import RedisConversationStore
from service.store.redis_loop_conversations import LoopRedisConversationStore
from tests.support.redis_contents import Commands, commands
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_until

# Both are ChatMessageStores as mypy sees them: a pipeline's ChatMessageRetriever takes either.
PROTOCOL_IMPLEMENTATIONS: tuple[type[ChatMessageStore], ...] = (MemoryConversationStore, RedisConversationStore)

StoreFactory = Callable[..., ConversationStore]


def turn(n: int) -> list[ChatMessage]:
    return [ChatMessage.from_user(f"q{n}"), ChatMessage.from_assistant(f"a{n}")]


def texts(messages: list[ChatMessage] | None) -> list[str | None]:
    assert messages is not None
    return [message.text for message in messages]


@pytest.fixture(params=["memory", "redis"])
def make_store(request: pytest.FixtureRequest) -> Iterator[StoreFactory]:
    """A factory of stores of one backend, `max_messages` and (Redis) `ttl` as given; all closed after."""
    made: list[ConversationStore] = []
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None

    def make(max_messages: int = 10, ttl: float = 60.0, max_conversations: int = 100) -> ConversationStore:
        store: ConversationStore
        if url is None:
            store = MemoryConversationStore(max_conversations, max_messages)
        else:
            store = RedisConversationStore(Secret.from_token(url), ttl=ttl, max_messages=max_messages)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


# The ChatMessageStore protocol.


def test_written_messages_come_back_in_order_with_role_text_and_meta(make_store: StoreFactory) -> None:
    store = make_store()
    messages = [ChatMessage.from_user("Hi ü", meta={"lang": "de"}), ChatMessage.from_assistant("Hallo")]
    assert store.write_messages("chat-1", messages) == 2
    back = store.retrieve_messages("chat-1")
    assert [(m.role.value, m.text) for m in back] == [("user", "Hi ü"), ("assistant", "Hallo")]
    assert back[0].meta["lang"] == "de"
    assert store.count_messages("chat-1") == 2
    assert store.retrieve_messages("chat-2") == [] and store.count_messages("chat-2") == 0


def test_messages_get_distinct_ids_and_a_rewrite_of_stored_ones_is_skipped(make_store: StoreFactory) -> None:
    store = make_store()
    store.write_messages("chat", turn(1))
    stored = store.retrieve_messages("chat")
    assert len({m.meta["chat_message_id"] for m in stored}) == 2
    assert store.write_messages("chat", stored) == 0  # a retried write adds nothing
    assert store.write_messages("chat", turn(2)) == 2
    assert texts(store.retrieve_messages("chat")) == ["q1", "a1", "q2", "a2"]


def test_system_messages_are_not_stored(make_store: StoreFactory) -> None:
    store = make_store()
    assert store.write_messages("chat", [ChatMessage.from_system("You are..."), *turn(1)]) == 2
    assert texts(store.retrieve_messages("chat")) == ["q1", "a1"]


def test_last_k_retrieves_the_last_rounds(make_store: StoreFactory) -> None:
    store = make_store()
    for n in range(3):
        store.write_messages("chat", turn(n))
    assert texts(store.retrieve_messages("chat", last_k=2)) == ["q1", "a1", "q2", "a2"]
    assert store.retrieve_messages("chat", last_k=0) == []
    with pytest.raises(ValueError, match="last_k"):
        store.retrieve_messages("chat", last_k=-1)


def test_delete_messages_forgets_one_conversation_and_delete_all_every_one(make_store: StoreFactory) -> None:
    store = make_store()
    for chat in ("a", "b", "c"):
        store.write_messages(chat, turn(1))
    store.delete_messages("a")
    assert store.count_messages("a") == 0 and store.count_messages("b") == 2
    store.delete_all_messages()
    assert store.count_messages("b") == 0 and store.count_messages("c") == 0


def test_a_conversation_keeps_its_newest_whole_turns_within_max_messages(make_store: StoreFactory) -> None:
    store = make_store(max_messages=5)
    for n in range(6):
        store.write_messages("chat", turn(n))
    assert texts(store.retrieve_messages("chat")) == ["q4", "a4", "q5", "a5"]


def test_a_store_rebuilt_from_its_dict_has_its_configuration(
    make_store: StoreFactory, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    store = make_store(max_messages=6)
    if isinstance(store, RedisConversationStore):  # serialisable only with the URL in the environment
        monkeypatch.setenv("HAYSTREAM_STORE_URL", request.getfixturevalue("redis_url"))
        store = RedisConversationStore(Secret.from_env_var("HAYSTREAM_STORE_URL"), max_messages=6)
    data = store.to_dict()
    rebuilt = type(store).from_dict(data)
    assert type(rebuilt) is type(store) and rebuilt.to_dict() == data
    assert rebuilt.max_messages == 6
    rebuilt.close()
    store.close()


# Conversations, on either store.


@pytest.fixture(params=["memory", "redis"])
async def conversations(request: pytest.FixtureRequest) -> AsyncIterator[Conversations]:
    """Conversations as the app builds them: the memory store in place, or the loop's Redis store."""
    store: LoopConversationStore
    if request.param == "memory":
        store = InPlace(MemoryConversationStore(max_conversations=100, max_messages=5))
    else:
        store = LoopRedisConversationStore(request.getfixturevalue("redis_url"), ttl=60, max_messages=5)
    conversations = Conversations(store)
    yield conversations
    await conversations.close()


async def test_a_pipelines_store_and_the_services_see_one_redis_conversation(redis_url: str) -> None:
    """The sync store (a pipeline's ChatMessageWriter/Retriever) and the loop's write the same keys the same way."""
    pipelines = RedisConversationStore(Secret.from_token(redis_url), max_messages=5)
    service = Conversations(LoopRedisConversationStore(redis_url, ttl=60, max_messages=5))
    conversation = await service.open("new")
    pipelines.write_messages(conversation.id, turn(1))
    assert await service.record_turn(conversation.id, "q2", "a2")
    assert texts(pipelines.retrieve_messages(conversation.id)) == ["q1", "a1", "q2", "a2"]
    assert (await service.open(conversation.id)).turns == 2
    pipelines.write_messages(conversation.id, turn(3))  # over max_messages, in either: the oldest whole turn goes
    assert [m["content"] for m in await service.messages(conversation.id) or []] == ["q2", "a2", "q3", "a3"]
    pipelines.close()
    await service.close()


async def test_ids_are_issued_by_the_server_unguessable_and_distinct(conversations: Conversations) -> None:
    ids = {(await conversations.open("new")).id for _ in range(50)}
    assert len(ids) == 50
    assert all(ID_PATTERN.fullmatch(i) for i in ids)
    # A well-formed id the store does not know starts a new conversation under a fresh id, not the client's.
    planted = "conv_" + "A" * 32
    assert (await conversations.open(planted)).id != planted


async def test_a_new_conversation_is_known_before_its_first_turn(conversations: Conversations) -> None:
    conversation = await conversations.open("new")
    assert await conversations.messages(conversation.id) == []
    assert (await conversations.open(conversation.id)).id == conversation.id


async def test_old_turns_are_dropped_whole_and_new_ones_still_stored(conversations: Conversations) -> None:
    """Regression: the store numbered messages by count, so after a trim new turns collided and were dropped."""
    conversation = await conversations.open("new")
    for n in range(6):
        assert await conversations.record_turn(conversation.id, f"q{n}", f"a{n}")
    assert await conversations.messages(conversation.id) == [
        {"role": "user", "content": "q4"},
        {"role": "assistant", "content": "a4"},
        {"role": "user", "content": "q5"},
        {"role": "assistant", "content": "a5"},
    ]
    assert (await conversations.open(conversation.id)).turns == 2


async def test_a_deleted_conversation_is_not_revived_by_a_late_turn(conversations: Conversations) -> None:
    conversation = await conversations.open("new")
    assert await conversations.delete(conversation.id)
    assert not await conversations.delete(conversation.id)
    assert not await conversations.record_turn(conversation.id, "q", "a")
    assert await conversations.messages(conversation.id) is None


# The bound on how many: least recently used out (memory), a time to live renewed on use (Redis).


async def test_the_least_recently_used_conversation_is_evicted_from_memory() -> None:
    store = MemoryConversationStore(max_conversations=2, max_messages=10)
    conversations = Conversations(InPlace(store))
    first, second = await conversations.open("new"), await conversations.open("new")
    await conversations.record_turn(first.id, "q", "a")  # first is now the more recently used
    await conversations.open("new")
    assert await conversations.messages(second.id) is None
    assert await conversations.messages(first.id) == [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a"},
    ]
    assert len(store) == 2


def test_a_redis_conversation_expires_when_unused_for_its_ttl(redis_url: str) -> None:
    store = RedisConversationStore(Secret.from_token(redis_url), ttl=0.2)
    store.create("chat")
    assert store.append_turn("chat", turn(1))
    wait_until(lambda: store.messages("chat") is None, 5, "the conversation to expire")
    with commands(redis_url) as command:
        assert command("KEYS", "*") == []  # every key of it: marker, messages, ids
    store.close()


def test_using_a_redis_conversation_renews_its_ttl_on_every_key(redis_url: str) -> None:
    store = RedisConversationStore(Secret.from_token(redis_url), ttl=60)
    store.create("chat")
    store.append_turn("chat", turn(1))
    with commands(redis_url) as command:
        keys = command("KEYS", "*")
        assert len(keys) == 3
        for key in keys:
            command("PEXPIRE", key, 1000)
        assert store.messages("chat") is not None  # a read (GET /conversations/{id}) leaves the TTL
        assert all(0 < command("PTTL", key) <= 1000 for key in keys)
        assert texts(store.messages("chat", touch=True)) == ["q1", "a1"]  # a use renews it
        assert all(59_000 < command("PTTL", key) <= 60_000 for key in keys)
    store.close()


def test_two_redis_stores_share_a_conversation_as_two_processes_do(redis_url: str) -> None:
    one, other = (RedisConversationStore(Secret.from_token(redis_url)) for _ in range(2))
    one.create("chat")
    assert other.append_turn("chat", turn(1))
    assert texts(one.messages("chat")) == ["q1", "a1"]
    assert one.forget("chat") and other.messages("chat") is None
    one.close()
    other.close()


def test_the_store_urls_password_is_never_serialised(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    store = RedisConversationStore(Secret.from_token(redis_url.replace("//", "//:hunter2@")))
    with pytest.raises(ValueError, match="Cannot serialize token-based secret"):
        store.to_dict()
    store.close()
    monkeypatch.setenv("HAYSTREAM_STORE_URL", redis_url.replace("//", "//:hunter2@"))
    by_name = RedisConversationStore(Secret.from_env_var("HAYSTREAM_STORE_URL"))
    assert "hunter2" not in str(by_name.to_dict())
    assert by_name.to_dict()["init_parameters"]["url"]["env_vars"] == ["HAYSTREAM_STORE_URL"]
    by_name.close()


# A Redis that goes away, and comes back.


async def test_a_lost_redis_is_a_store_unavailable_error_and_its_return_is_picked_up(own_redis: RedisServer) -> None:
    conversations = Conversations(LoopRedisConversationStore(own_redis.url, ttl=60, max_messages=10))
    conversation = await conversations.open("new")
    own_redis.stop()
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        await conversations.open(conversation.id)
    with pytest.raises(StoreUnavailable):
        await conversations.record_turn(conversation.id, "q", "a")
    with pytest.raises(StoreUnavailable):
        await conversations.messages(conversation.id)
    assert time.monotonic() - started < 3 * (CONNECT_TIMEOUT + 1)  # each fails fast: no hang
    own_redis.start()  # nothing persisted: the conversation is gone, and the store works again unaided
    assert await conversations.messages(conversation.id) is None
    assert ID_PATTERN.fullmatch((await conversations.open("new")).id)
    await conversations.close()


async def test_many_conversations_at_once_hold_no_more_connections_than_the_pool(redis_url: str) -> None:
    store = LoopRedisConversationStore(redis_url, ttl=60, max_messages=10, connections=4)
    conversations = Conversations(store)
    opened = await asyncio.gather(*(conversations.open("new") for _ in range(200)))
    assert all(await asyncio.gather(*(conversations.record_turn(c.id, "q", "a") for c in opened)))
    with commands(redis_url) as command:
        assert 1 <= conversation_clients(command) <= 4
        await conversations.close()
        wait_until(lambda: conversation_clients(command) == 0, 5, "the store's connections to close")


def test_the_pipelines_store_closes_its_connections(redis_url: str) -> None:
    store = RedisConversationStore(Secret.from_token(redis_url))
    store.write_messages("chat", turn(1))
    with commands(redis_url) as command:
        assert conversation_clients(command) == 1
        store.close()
        wait_until(lambda: conversation_clients(command) == 0, 5, "the store's connections to close")


def conversation_clients(command: Commands) -> int:
    clients = command("CLIENT", "LIST")
    return (clients.decode() if isinstance(clients, bytes) else str(clients)).count("name=haystream-conversations")
