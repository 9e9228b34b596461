"""Reading a test's Redis directly: its raw commands, and everything it holds for "never written" checks."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis

Command = Any  # a reply as the sync client parses it (redis-py's stubs type each command for async too)

READS = {
    b"string": ("GET",),
    b"list": ("LRANGE", 0, -1),
    b"hash": ("HGETALL",),
    b"set": ("SMEMBERS",),
    b"zset": ("ZRANGE", 0, -1),
    b"stream": ("XRANGE", "-", "+"),
}


class Commands:
    def __init__(self, url: str) -> None:
        self._client = redis.Redis.from_url(url)

    def __call__(self, *args: str | bytes | int | float) -> Command:
        return self._client.execute_command(*args)  # type: ignore[no-untyped-call]

    def close(self) -> None:
        self._client.close()


@contextmanager
def commands(url: str) -> Iterator[Commands]:
    client = Commands(url)
    try:
        yield client
    finally:
        client.close()


def everything_in(url: str) -> bytes:
    """Every key and every value (strings, lists, hashes, sets, sorted sets, streams), as one byte string."""
    with commands(url) as command:
        parts: list[bytes] = []
        for key in command("KEYS", "*"):
            kind = command("TYPE", key)
            kind = kind if isinstance(kind, bytes) else str(kind).encode()
            read, *args = READS.get(kind, ("TYPE",))
            parts += [key, repr(command(read, key, *args)).encode()]
        return b"\n".join(parts)
