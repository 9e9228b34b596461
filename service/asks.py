"""What the edge hands to serving, and what it gets back: plain values, no web framework.

An `Ask` is one parsed question with the caller's key; a `Reader` is an attached reader of a held
run's frames; `Answering` is a run one client reads whole (a JSON answer).
"""

import hashlib
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass

from service.errors import RunError
from service.streaming.collector import StreamItem
from service.streaming.sse import EVENTS, Encoder

# A run's wire format, given its id (OpenAI's chunks carry a completion id made from it).
EncoderFor = Callable[[str], Encoder]


def named_events(_: str) -> Encoder:
    return EVENTS


def owner_of(api_key: str) -> bytes:
    """Who may attach by Idempotency-Key or resume a POST /chat: a hash of the key, never the key."""
    return hashlib.sha256(api_key.encode()).digest()


@dataclass(frozen=True)
class Ask:
    """One question, as every route that starts a run receives it once parsed."""

    api_key: str
    query: str
    pipeline: str = "chat"
    conversation_id: str | None = None
    # The turns before the query, when the client sends them (/v1/chat/completions) instead of a conversation id.
    history: tuple[Mapping[str, str], ...] | None = None
    # Per-request generation options (temperature, max_completion_tokens, user, ...) over the settings' own.
    generation: Mapping[str, object] | None = None

    @property
    def owner(self) -> bytes:
        return owner_of(self.api_key)


def _nothing_yet() -> RunError | None:
    return None


def _already() -> bool:
    return True


@dataclass(frozen=True)
class Reader:
    """A reader attached to a held run: its SSE frames, and what to call once the response is over.

    `opened` says whether the run has logged more than its `metadata` (or has ended), and
    `failed_early` gives the run's error if it failed before its first text: a response that has
    not started yet can then answer with an HTTP status instead (/v1/chat/completions does). A run
    read through another process answers as opened."""

    run_id: str
    frames: AsyncGenerator[bytes, None]
    on_close: Callable[[], None]
    opened: Callable[[], bool] = _already
    failed_early: Callable[[], RunError | None] = _nothing_yet


@dataclass(frozen=True)
class Answering:
    """A run read whole by one client (a JSON answer): its events, and what to call when done."""

    run_id: str
    events: AsyncGenerator[StreamItem, None]
    on_close: Callable[[], None]
