"""OpenAI's chat-completions wire format for a run: the encoder of its chunks, and its one-object answer.

A run started through /v1/chat/completions is the same run as one started through POST /chat (same
admission, pipeline, bridge, collector and event log); only its frames differ. `OpenAIChunks` turns
the collector's events into what OpenAI's SDKs parse:

- `metadata` -> the first chunk, `delta: {"role": "assistant", "content": ""}` (sent before the
  upstream answers, as POST /chat's `metadata` is);
- `data` -> a chunk with `delta: {"content": ...}`, the text exactly as the upstream sent it;
- `end` -> a chunk with an empty delta and the `finish_reason`; then, when the client asked with
  `stream_options.include_usage`, a chunk with empty `choices` and the `usage`; then `data: [DONE]`;
- `error` -> `data: {"error": {"message", "type", "param", "code"}}`, which the SDKs raise as
  `APIError`, and no `[DONE]` (OpenAI sends none after an error either).

Every frame keeps its SSE `id:` (the SDKs ignore it), so `Last-Event-ID` and `Idempotency-Key`
resume a completion exactly as they resume a POST /chat stream. One completion id per run
(`chatcmpl-` + the run id's random part), so a resumed read continues the same completion.

The per-chunk JSON is a prefix and a suffix built once per run around the `data` event's text,
which the collector has already JSON-encoded: no parsing or re-encoding per token.
"""

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

from service.streaming.sse import Event, json_frame

OBJECT_CHUNK = "chat.completion.chunk"
OBJECT_COMPLETION = "chat.completion"
DONE_FRAME = b"data: [DONE]\n\n"

# The service's error types (service/errors.py `ErrorType`, and the held run's `cancelled` and the log's
# `replay_unavailable`) as the `type` of an OpenAI error object; the service's own type is its `code`.
_ERROR_TYPES = {
    "upstream_auth": "authentication_error",
    "upstream_rejected": "invalid_request_error",
    "rate_limited": "rate_limit_error",
    "cancelled": "invalid_request_error",
    "replay_unavailable": "invalid_request_error",
}


def completion_id(run_id: str) -> str:
    return "chatcmpl-" + run_id.removeprefix("run_")


def error_object(
    message: str, error_type: str, code: str | None, param: str | None = None, **extra: Any
) -> dict[str, Any]:
    """An OpenAI error body: `{"error": {"message", "type", "param", "code"}}` (+ the service's extras)."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": code, **extra}}


def run_error_object(data: dict[str, Any]) -> dict[str, Any]:
    """A run's `error` event data (`{"type", "message", "retryable", "retry_after"?}`) as an OpenAI error."""
    code = str(data.get("type", "internal"))
    extra = {key: data[key] for key in ("retryable", "retry_after") if key in data}
    return error_object(str(data.get("message", "")), _ERROR_TYPES.get(code, "server_error"), code, **extra)


@dataclass(frozen=True)
class OpenAIChunks:
    """The encoder of one run's frames (`service/streaming/sse.py` `Encoder`); plain values only."""

    completion_id: str
    model: str
    created: int
    include_usage: bool = False
    wire: ClassVar[str] = "openai"
    _head: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        head = {"id": self.completion_id, "object": OBJECT_CHUNK, "created": self.created, "model": self.model}
        object.__setattr__(self, "_head", json.dumps(head, separators=(",", ":"))[:-1])  # without its closing brace

    def __call__(self, event: Event, event_id: str | None) -> bytes:
        if event.name == "data":
            delta = '{"content":' + event.data + "}"
            return self._frame(self._choice(delta, "null"), event_id)
        if event.name == "metadata":
            return self._frame(self._choice('{"role":"assistant","content":""}', "null"), event_id)
        if event.name == "end":
            return self._end(json.loads(event.data), event_id)
        return json_frame(json.dumps(run_error_object(json.loads(event.data))), event_id)

    def _end(self, data: dict[str, Any], event_id: str | None) -> bytes:
        finish_reason = json.dumps(data.get("finish_reason") or "stop")
        frames = [self._frame(self._choice("{}", finish_reason), event_id)]
        if self.include_usage and data.get("usage") is not None:
            frames.append(self._frame(',"choices":[],"usage":' + json.dumps(data["usage"]), event_id))
        frames.append(DONE_FRAME)
        return b"".join(frames)

    @staticmethod
    def _choice(delta: str, finish_reason: str) -> str:
        return ',"choices":[{"index":0,"delta":' + delta + ',"logprobs":null,"finish_reason":' + finish_reason + "}]"

    def _frame(self, rest: str, event_id: str | None) -> bytes:
        return json_frame(self._head + rest + "}", event_id)


def completion(
    run_id: str, model: str, created: int, text: str, finish_reason: str | None, usage: dict[str, Any] | None
) -> dict[str, Any]:
    """A whole answer as one `chat.completion`."""
    body: dict[str, Any] = {
        "id": completion_id(run_id),
        "object": OBJECT_COMPLETION,
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason or "stop",
            }
        ],
    }
    if usage is not None:
        body["usage"] = usage
    return body
