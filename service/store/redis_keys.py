"""The Redis store's key names and stream entry ids, in one place.

A run's event n (its SSE id `<run_id>:<n>`) is the stream entry `0-<n+1>` (`0-0` is not a valid
entry id): explicit ids, so writing an event twice fails instead of adding a duplicate, and a
client's Last-Event-ID names exactly one entry. An Idempotency-Key is stored only as a hash,
together with the owner (itself a hash of the API key): neither key is ever written to Redis.
"""

import hashlib

PREFIX = "hs:"


def run_key(run_id: str) -> str:
    """A hash: the run's owner (hex), the process generating it."""
    return f"{PREFIX}run:{run_id}"


def log_key(run_id: str) -> str:
    """A stream: the run's events as SSE frames (field `f`), with their names (field `e`)."""
    return f"{PREFIX}run:{run_id}:log"


def readers_key(run_id: str) -> str:
    """A sorted set: readers attached through other processes, scored by when they stop counting."""
    return f"{PREFIX}run:{run_id}:readers"


def run_keys(run_id: str) -> tuple[str, str, str]:
    return run_key(run_id), log_key(run_id), readers_key(run_id)


def idempotency_key(owner: bytes, key: str) -> str:
    return PREFIX + "idem:" + hashlib.sha256(owner + b"\0" + key.encode()).hexdigest()


def process_key(process: str) -> str:
    """A string with a TTL: present while the process is alive (its lease)."""
    return f"{PREFIX}proc:{process}"


def control_key(process: str) -> str:
    """A stream: what other processes ask of this one (stop a run), read by its follower loop."""
    return f"{PREFIX}ctl:{process}"


def entry_id(seq: int) -> str:
    return f"0-{seq + 1}"


def seq_of(entry: bytes | str) -> int:
    """The event number of a stream entry id."""
    text = entry.decode() if isinstance(entry, bytes) else entry
    return int(text.partition("-")[2]) - 1


TERMINAL = (b"end", b"error")
