"""A chat-completions request as the demo model sees it, and the record tests read of it.

Bad JSON gets a 400 and no ``RequestRecord`` (there is nothing to record).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from service.demo_model.behaviour import Behaviour
from service.demo_model.wire import HttpError, Request


@dataclass
class RequestRecord:
    api_key: str | None
    model: str
    prompt: str
    messages: list[dict[str, Any]]
    stream: bool
    started: float
    tokens_sent: int = 0
    completed: bool = False
    client_gone: bool = False
    closed_at: float | None = None
    closed: threading.Event = field(default_factory=threading.Event)


def _text_of(content: Any) -> str:
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return content if isinstance(content, str) else ""


def _bearer(headers: dict[str, str]) -> str | None:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token if scheme.lower() == "bearer" else None


@dataclass
class Chat:
    record: RequestRecord
    behaviour: Behaviour
    include_usage: bool
    prompt_tokens: int
    keep_alive: bool


def parse_chat(request: Request, behaviour_for: Callable[[str], Behaviour]) -> Chat:
    try:
        data = json.loads(request.body)
    except ValueError as exc:
        raise HttpError(400, f"We could not parse the JSON body of your request: {exc}") from exc
    messages = data.get("messages") if isinstance(data, dict) else None
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise HttpError(400, "'messages' must be a list of message objects")
    model = data.get("model", "demo")
    if not isinstance(model, str):
        raise HttpError(400, "'model' must be a string")
    users = [m for m in messages if m.get("role") == "user"]
    options = data.get("stream_options")
    record = RequestRecord(
        api_key=_bearer(request.headers),
        model=model,
        prompt=_text_of(users[-1].get("content")) if users else "",
        messages=messages,
        stream=data.get("stream") is True,
        started=time.monotonic(),
    )
    return Chat(
        record=record,
        behaviour=behaviour_for(record.prompt),
        include_usage=isinstance(options, dict) and options.get("include_usage") is True,
        prompt_tokens=sum(len(_text_of(m.get("content")).split()) for m in messages),
        keep_alive=request.keep_alive,
    )


def finish_record(record: RequestRecord, *, completed: bool = False, client_gone: bool = False) -> None:
    record.completed = completed
    record.client_gone = client_gone
    record.closed_at = time.monotonic()
    record.closed.set()
