"""`LoopRedisConversationStore`: the conversations the service reads and writes on the event loop, in Redis.

`redis.asyncio`, not the sync store on a thread: a follow-up's history is read before its first
token, and a thread hop (which waits for the GIL behind the streaming threads) adds to it and to its
tail; see docs/performance.md, "On the loop, not on a thread". It holds at most `connections`
connections, however many requests wait. Keys, scripts and format are the sync store's
(`redis_conversation_format.py`).
"""

from collections.abc import Callable, Coroutine
from functools import wraps
from typing import Any, ParamSpec, TypeVar

import redis.asyncio as redis
from haystack.dataclasses import ChatMessage
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from service.errors import StoreUnavailable
from service.store import redis_conversation_format as fmt

P = ParamSpec("P")
T = TypeVar("T")


def reachable(method: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """A Redis that cannot be reached becomes `StoreUnavailable` (a 503 at the edge); anything else passes through."""

    @wraps(method)
    async def call(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(*args, **kwargs)
        except fmt.UNREACHABLE as error:
            raise StoreUnavailable from error

    return call


class LoopRedisConversationStore:
    def __init__(self, url: str, *, ttl: float, max_messages: int, connections: int = 4) -> None:
        self.ttl, self.max_messages, self.prefix = ttl, max_messages, fmt.PREFIX
        pool = redis.BlockingConnectionPool.from_url(
            url,
            max_connections=connections,
            timeout=fmt.COMMAND_TIMEOUT,  # for a free connection, which only a stuck Redis would hold
            socket_timeout=fmt.COMMAND_TIMEOUT,
            socket_connect_timeout=fmt.CONNECT_TIMEOUT,
            retry=Retry(ExponentialBackoff(cap=0.1, base=0.02), retries=1),  # a write is safe to retry
            client_name=fmt.CLIENT_NAME,
        )
        self._redis = redis.Redis(connection_pool=pool)
        self._write = self._redis.register_script(fmt.WRITE)
        self._read = self._redis.register_script(fmt.READ)

    @reachable
    async def create(self, chat_history_id: str) -> None:
        await self._append(chat_history_id, [], create=True)

    @reachable
    async def messages(self, chat_history_id: str, *, touch: bool = False) -> list[ChatMessage] | None:
        keys = fmt.keys(self.prefix, chat_history_id)
        return fmt.decode(await self._read(keys=keys, args=fmt.read_args(self.ttl, touch=touch)))

    @reachable
    async def append_turn(self, chat_history_id: str, turn: list[ChatMessage]) -> bool:
        return await self._append(chat_history_id, turn, create=False) >= 0

    @reachable
    async def forget(self, chat_history_id: str) -> bool:
        deleted = await self._redis.delete(*fmt.keys(self.prefix, chat_history_id))
        return int(deleted) > 0

    async def close(self) -> None:
        """Conversations outlive this process (that is the point): only the connections close."""
        await self._redis.connection_pool.disconnect()  # a pool handed to the client is not closed by `aclose()`

    async def _append(self, chat_history_id: str, messages: list[ChatMessage], *, create: bool) -> int:
        args = fmt.write_args(self.ttl, self.max_messages, messages, create=create)
        return int(await self._write(keys=fmt.keys(self.prefix, chat_history_id), args=args))
