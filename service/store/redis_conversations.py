"""`RedisConversationStore`: the conversation store several processes share, on redis-py's sync client.

Each conversation is three keys with one hash tag (so a cluster keeps them in one slot), written
together by one Lua script and given one time to live, renewed on every use:

- `{prefix}conv:{<id>}`: the marker, so a conversation with no turn yet is known;
- `{prefix}conv:{<id>}:messages`: a list of `ChatMessage.to_dict()` JSON, oldest first;
- `{prefix}conv:{<id>}:ids`: their `chat_message_id`s, in the same order.

A write skips messages whose id is already stored, as the reference store does, which also makes a
retried write (the connection dropped after the script ran) harmless; messages that come without an id
get a random one, so ids never collide after a trim. The trim drops the oldest whole turns in the same
script, so no reader ever sees a conversation over its bound or half a turn.

TTL in place of LRU: a process cannot know which conversation the others used last without a shared
index to keep tidy, while a TTL is one `PEXPIRE` per use and Redis enforces it for every process. The
count is then bounded by how many conversations start within one TTL; `maxmemory` with the
`volatile-ttl` or `volatile-lru` policy puts a hard cap on it in Redis itself.

The protocol is synchronous, and so is this client: `Conversations` calls it on its own few threads,
never on the event loop, and the pool holds at most `connections` connections, one per such thread.
"""

import json
import secrets
from collections.abc import Callable
from dataclasses import replace
from functools import wraps
from typing import Any, ParamSpec, TypeVar

import redis
from haystack import default_from_dict, default_to_dict
from haystack.dataclasses import ChatMessage, ChatRole
from haystack.utils import Secret, deserialize_secrets_inplace
from haystack_experimental.chat_message_stores.in_memory import InMemoryChatMessageStore
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from service.errors import StoreUnavailable
from service.store.conversations import MESSAGE_ID

P = ParamSpec("P")
T = TypeVar("T")

# KEYS: marker, messages, ids. ARGV: ttl ms, max messages, "1" to create it if unknown ("0": only if it
# exists, else -1), then (id, message) pairs. Returns how many messages were written.
_WRITE = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  if ARGV[3] == '0' then return -1 end
  redis.call('SET', KEYS[1], '1')
end
local written = 0
for i = 4, #ARGV, 2 do
  if not redis.call('LPOS', KEYS[3], ARGV[i]) then
    redis.call('RPUSH', KEYS[3], ARGV[i])
    redis.call('RPUSH', KEYS[2], ARGV[i + 1])
    written = written + 1
  end
end
local stored, max = redis.call('LLEN', KEYS[2]), tonumber(ARGV[2])
if stored > max then
  local drop = stored - (max - max % 2)
  redis.call('LTRIM', KEYS[2], drop, -1)
  redis.call('LTRIM', KEYS[3], drop, -1)
end
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[1]) end
return written
"""

# KEYS: marker, messages, ids. ARGV: ttl ms to renew it with, or "0". Returns nil if unknown.
_READ = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
if ARGV[1] ~= '0' then
  for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[1]) end
end
return redis.call('LRANGE', KEYS[2], 0, -1)
"""

STORE_URL_ENV = "HAYSTREAM_STORE_URL"
PREFIX = "hs:"  # the run store's too (service/store/redis_keys.py): one namespace to grant, list or flush
CONNECT_TIMEOUT = 1.0  # seconds: a Redis that is gone is noticed quickly, and the request gets a 503
COMMAND_TIMEOUT = 2.0
UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)


def reachable(method: Callable[P, T]) -> Callable[P, T]:
    """A Redis that cannot be reached becomes `StoreUnavailable` (a 503 at the edge); anything else passes through."""

    @wraps(method)
    def call(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return method(*args, **kwargs)
        except UNREACHABLE as error:
            raise StoreUnavailable from error

    return call


class RedisConversationStore:
    def __init__(
        self,
        url: Secret = Secret.from_env_var(STORE_URL_ENV),  # noqa: B008 (a Secret is immutable)
        *,
        ttl: float = 3600.0,
        max_messages: int = 40,
        prefix: str = PREFIX,
        connections: int = 4,
    ) -> None:
        self.url, self.ttl, self.max_messages, self.prefix = url, ttl, max_messages, prefix
        self.connections = connections
        self._ttl_ms = str(max(int(ttl * 1000), 1))
        pool = redis.BlockingConnectionPool.from_url(
            url.resolve_value() or "",
            max_connections=connections,
            timeout=COMMAND_TIMEOUT,  # for a free connection, which only a stuck Redis would hold
            socket_timeout=COMMAND_TIMEOUT,
            socket_connect_timeout=CONNECT_TIMEOUT,
            retry=Retry(ExponentialBackoff(cap=0.1, base=0.02), retries=1),  # a write is safe to retry: see above
            client_name="haystream-conversations",
        )
        self._redis = redis.Redis(connection_pool=pool)
        self._write = self._redis.register_script(_WRITE)
        self._read = self._redis.register_script(_READ)

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
        stored = self._read(keys=self._keys(chat_history_id), args=[self._ttl_ms if touch else "0"])
        if stored is None:
            return None
        return [ChatMessage.from_dict(json.loads(item)) for item in stored]

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
        args = [self._ttl_ms, str(self.max_messages), "1" if create else "0"]
        for message in messages:
            if message.is_from(ChatRole.SYSTEM):
                continue  # as the reference store does by default
            if message.meta.get(MESSAGE_ID) is None:
                message = replace(message, _meta={**message.meta, MESSAGE_ID: secrets.token_hex(8)})
            args += [str(message.meta[MESSAGE_ID]), json.dumps(message.to_dict(), ensure_ascii=False)]
        return int(self._write(keys=self._keys(chat_history_id), args=args))

    def _keys(self, chat_history_id: str) -> list[str]:
        marker = f"{self.prefix}conv:{{{chat_history_id}}}"
        return [marker, marker + ":messages", marker + ":ids"]


def _count(reply: object) -> int:
    """A sync client's integer reply (redis-py types its commands for both the sync and the async client)."""
    assert isinstance(reply, int)
    return reply
