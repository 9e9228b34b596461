"""Connections to Redis: a small pool for commands, one connection for the follower's blocking XREAD.

That is the whole of a process's connections (plus the pool's, at most `POOL_SIZE`): readers never
take a connection each. Every failure to reach Redis becomes `StoreUnavailable`, which the edge
maps to 503 `store_unavailable`; the URL is only ever shown redacted (no password).
"""

from collections.abc import Iterator
from contextlib import contextmanager

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service.errors import StoreUnavailable

POOL_SIZE = 8
CONNECT_TIMEOUT = 1.0  # seconds: a Redis that is gone is noticed quickly
COMMAND_TIMEOUT = 2.0
POOL_WAIT = 5.0  # seconds a command waits for a free pooled connection (then: StoreUnavailable)
UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)


def command_client(url: str, process: str) -> "redis.Redis":
    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=POOL_SIZE,
        timeout=POOL_WAIT,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=COMMAND_TIMEOUT,
        retry=Retry(NoBackoff(), 1),
        client_name=f"haystream:{process}",
    )
    return redis.Redis.from_pool(pool)  # owns the pool: aclose() closes its connections


def blocking_client(url: str, process: str, block: float) -> "redis.Redis":
    """One connection for XREAD BLOCK: its read timeout is the block plus a margin, never shorter."""
    client: redis.Redis = redis.Redis.from_url(
        url,
        single_connection_client=True,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=block + COMMAND_TIMEOUT,
        retry=Retry(NoBackoff(), 0),
        client_name=f"haystream:{process}:follower",
    )
    return client


@contextmanager
def reachable() -> Iterator[None]:
    """Turn "Redis cannot be reached" into `StoreUnavailable`; anything else passes through."""
    try:
        yield
    except UNREACHABLE as error:
        raise StoreUnavailable from error
