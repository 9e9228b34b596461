"""`RedisConversationStore`: haystack-experimental's `ChatMessageStore` on Redis, with redis-py's sync client.

The protocol is synchronous, so this is the store a Haystack pipeline's `ChatMessageRetriever` or
`ChatMessageWriter` is given, on its worker thread. The service itself reads and writes conversations
on the event loop with `LoopRedisConversationStore` (`redis_loop_conversations.py`): the same keys,
scripts and format (`redis_conversation_format.py`), so both see one conversation.

TTL in place of LRU: a process cannot know which conversation the others used last without a shared
index to keep tidy, while a TTL is one `PEXPIRE` per use and Redis enforces it for every process. The
count is then bounded by how many conversations start within one TTL; `maxmemory` with the
`volatile-ttl` or `volatile-lru` policy puts a hard cap on it in Redis itself.
"""

from collections.abc import Callable
from functools import wraps
from typing import Any, ParamSpec, TypeVar

import redis
from haystack import default_from_dict, default_to_dict
from haystack.dataclasses import ChatMessage
from haystack.utils import Secret, deserialize_secrets_inplace
from haystack_experimental.chat_message_stores.in_memory import InMemoryChatMessageStore
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from service.errors import StoreUnavailable
from service.store import redis_conversation_format as fmt

P = ParamSpec("P")
T = TypeVar("T")

STORE_URL_ENV = "HAYSTREAM_STORE_URL"
RETRY = Retry(ExponentialBackoff(cap=0.1, base=0.02), retries=1)  # a write is safe to retry (see the format)


def reachable(method: Callable[P, T]) -> Callable[P, T]:
    """A Redis that cannot be reached becomes `StoreUnavailable` (a 503 at the edge); anything else passes through."""

    @wraps(method)
    def call(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return method(*args, **kwargs)
        except fmt.UNREACHABLE as error:
            raise StoreUnavailable from error

    return call


class RedisConversationStore:
    def __init__(
        self,
        url: Secret = Secret.from_env_var(STORE_URL_ENV),  # noqa: B008 (a Secret is immutable)
        *,
        ttl: float = 3600.0,
        max_messages: int = 40,
        prefix: str = fmt.PREFIX,
        connections: int = 4,
    ) -> None:
        self.url, self.ttl, self.max_messages, self.prefix = url, ttl, max_messages, prefix
        self.connections = connections
        pool = redis.BlockingConnectionPool.from_url(
            url.resolve_value() or "",
            max_connections=connections,
            timeout=fmt.COMMAND_TIMEOUT,  # for a free connection, which only a stuck Redis would hold
            socket_timeout=fmt.COMMAND_TIMEOUT,
            socket_connect_timeout=fmt.CONNECT_TIMEOUT,
            retry=RETRY,
            client_name=fmt.CLIENT_NAME,
        )
        self._redis = redis.Redis(connection_pool=pool)
        self._write = self._redis.register_script(fmt.WRITE)
        self._read = self._redis.register_script(fmt.READ)

    # The ChatMessageStore protocol.

    def to_dict(self) -> dict[str, Any]:
        """The URL as its Secret serializes (an environment variable's name): a password is never written out."""
        return default_to_dict(
            self,
            url=self.url.to_dict(),
            ttl=self.ttl,
            max_messages=self.max_messages,
            prefix=self.prefix,
            connections=self.connections,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RedisConversationStore":
        data = {**data, "init_parameters": dict(data["init_parameters"])}  # the caller's dict is left as it was
        deserialize_secrets_inplace(data["init_parameters"], keys=["url"])
        return default_from_dict(cls, data)

    @reachable
    def count_messages(self, chat_history_id: str) -> int:
        return _count(self._redis.llen(self._keys(chat_history_id)[1]))

    @reachable
    def write_messages(self, chat_history_id: str, messages: list[ChatMessage]) -> int:
        return self._append(chat_history_id, messages, create=True)

    def retrieve_messages(self, chat_history_id: str, last_k: int | None = None) -> list[ChatMessage]:
        if last_k is not None and last_k < 0:
            raise ValueError("last_k must be 0 or greater")
        messages = self.messages(chat_history_id) or []
        if last_k is None:
            return messages
        return InMemoryChatMessageStore._get_last_k_messages(messages, last_k) if last_k else []  # the same rounds

    def delete_messages(self, chat_history_id: str) -> None:
        self.forget(chat_history_id)

    @reachable
    def delete_all_messages(self) -> None:
        """Every conversation under this store's prefix (other keys in the database are left alone)."""
        batch: list[bytes] = []
        for key in self._redis.scan_iter(match=f"{self.prefix}conv:*", count=500):
            batch.append(key)
            if len(batch) == 500:
                self._redis.unlink(*batch)
                batch.clear()
        if batch:
            self._redis.unlink(*batch)

    # What Conversations needs besides.

    @reachable
    def create(self, chat_history_id: str) -> None:
        self._append(chat_history_id, [], create=True)

    @reachable
    def messages(self, chat_history_id: str, *, touch: bool = False) -> list[ChatMessage] | None:
        return fmt.decode(self._read(keys=self._keys(chat_history_id), args=fmt.read_args(self.ttl, touch=touch)))

    @reachable
    def append_turn(self, chat_history_id: str, turn: list[ChatMessage]) -> bool:
        return self._append(chat_history_id, turn, create=False) >= 0

    @reachable
    def forget(self, chat_history_id: str) -> bool:
        return _count(self._redis.delete(*self._keys(chat_history_id))) > 0

    def close(self) -> None:
        """Conversations outlive this process (that is the point): only the connections close."""
        self._redis.connection_pool.disconnect()  # a pool handed to the client is not closed by `close()`

    def _append(self, chat_history_id: str, messages: list[ChatMessage], *, create: bool) -> int:
        args = fmt.write_args(self.ttl, self.max_messages, messages, create=create)
        return int(self._write(keys=self._keys(chat_history_id), args=args))

    def _keys(self, chat_history_id: str) -> list[str]:
        return fmt.keys(self.prefix, chat_history_id)


def _count(reply: object) -> int:
    """A sync client's integer reply (redis-py types its commands for both the sync and the async client)."""
    assert isinstance(reply, int)
    return reply
