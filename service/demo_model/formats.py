"""OpenAI's chat-completions formats: error and completion JSON, and SSE chunk events.

Chunk events are pre-formatted as strings with only the token text JSON-encoded, each its
own HTTP chunk. They are built as ``str`` that must be ASCII (every text is JSON-encoded
with ensure_ascii), so a whole batch of chunks is encoded to bytes at once.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring_ascii as json_str  # json.dumps of one str, minus overhead
from typing import Any

from service.demo_model.wire import JSON, HttpError, chunk, fixed_response


def error_json(message: str, type_: str, code: str | None) -> bytes:
    error = {"message": message, "type": type_, "param": None, "code": code}
    return json.dumps({"error": error}).encode()


def error_response(exc: HttpError, keep_alive: bool, code: str | None = None) -> bytes:
    body = error_json(exc.message, "invalid_request_error", code)
    return fixed_response(exc.status, JSON, body, keep_alive)


def usage_json(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def completion_json(completion_id: str, created: int, model: str, text: str, usage: dict[str, int]) -> bytes:
    message = {"role": "assistant", "content": text, "refusal": None}
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
    body: dict[str, Any] = {"id": completion_id, "object": "chat.completion", "created": created}
    body.update(model=model, choices=[choice], usage=usage)
    return json.dumps(body).encode()


class ChunkFormat:
    """Pre-formatted SSE events of one streamed completion, each its own HTTP chunk."""

    def __init__(self, completion_id: str, created: int, model: str) -> None:
        base = (
            f'data: {{"id":"{completion_id}","object":"chat.completion.chunk",'
            f'"created":{created},"model":{json_str(model)},"choices":'
        )
        self._base = base
        self._heads = (
            base + '[{"index":0,"delta":{"content":',
            base + '[{"index":0,"delta":{"role":"assistant","content":',
        )
        self._tail = '},"finish_reason":null}]}\n\n'
        self._fixed = (len(self._heads[0]) + len(self._tail), len(self._heads[1]) + len(self._tail))

    def content(self, text: str, first: bool) -> str:
        quoted = json_str(text)
        return f"{self._fixed[first] + len(quoted):x}\r\n{self._heads[first]}{quoted}{self._tail}\r\n"

    def empty(self) -> str:
        return chunk(self._base + '[{"index":0,"delta":{},"finish_reason":null}]}\n\n')

    def finish(self) -> str:
        return chunk(self._base + '[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n')

    def usage(self, prompt: int, completion: int) -> str:
        return chunk(f'{self._base}[],"usage":{json.dumps(usage_json(prompt, completion))}}}\n\n')
