"""OpenAI's chunks as the encoder writes them: what the SDKs parse, each with the event log's id."""

import json

import pytest

from service.streaming.event_log import EventLog
from service.streaming.openai_chunks import OpenAIChunks, completion, run_error_object
from service.streaming.sse import Event, json_string
from tests.support.sse import parse_sse

CHUNKS = OpenAIChunks("chatcmpl-abc", "haystream-chat", 1_700_000_000, include_usage=True)
END = Event("end", json.dumps({"finish_reason": "length", "usage": {"prompt_tokens": 3, "completion_tokens": 5}}))


def frames(*events: Event, encoder: OpenAIChunks = CHUNKS) -> list[dict[str, object] | str]:
    text = b"".join(encoder(event, f"run_abc:{n}") for n, event in enumerate(events)).decode()
    return [event.data if event.data == "[DONE]" else event.json() for event in parse_sse(text).events]


def test_the_first_chunk_carries_the_role_and_every_chunk_the_same_completion_id() -> None:
    first, text = frames(Event("metadata", "{}"), Event("data", json.dumps("Hi")))
    assert isinstance(first, dict) and isinstance(text, dict)
    assert first["choices"] == [
        {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
    ]
    assert text["choices"][0]["delta"] == {"content": "Hi"}  # type: ignore[index]
    for chunk in (first, text):
        assert chunk["id"] == "chatcmpl-abc" and chunk["object"] == "chat.completion.chunk"
        assert chunk["model"] == "haystream-chat" and chunk["created"] == 1_700_000_000


@pytest.mark.parametrize(
    "text", ["plain", 'quote " and \\ backslash', "line\nbreak\r\n", "naïve ☃ 🚀", "", "sep\u2028ara\u2029tors\x85"]
)
def test_the_text_reaches_the_delta_unchanged(text: str) -> None:
    """The collector's JSON (`json_string`) goes into the chunk as it is: one `data:` line, the same text."""
    raw = CHUNKS(Event("data", json_string(text)), "run_abc:1")
    assert raw.count(b"\n") == 3 and "\u2028".encode() not in raw
    (chunk,) = frames(Event("data", json_string(text)))
    assert isinstance(chunk, dict)
    assert chunk["choices"][0]["delta"]["content"] == text  # type: ignore[index]


def test_the_end_is_the_finish_reason_then_the_usage_with_no_choices_then_done() -> None:
    finish, usage, done = frames(END)
    assert isinstance(finish, dict) and isinstance(usage, dict)
    assert finish["choices"][0]["finish_reason"] == "length" and finish["choices"][0]["delta"] == {}  # type: ignore[index]
    assert usage["choices"] == [] and usage["usage"] == {"prompt_tokens": 3, "completion_tokens": 5}
    assert done == "[DONE]"


def test_no_usage_chunk_unless_the_client_asked() -> None:
    finish, done = frames(END, encoder=OpenAIChunks("chatcmpl-abc", "haystream-chat", 1))
    assert isinstance(finish, dict) and "usage" not in finish and done == "[DONE]"


def test_an_error_is_an_openai_error_object_and_no_done() -> None:
    data = {"type": "rate_limited", "message": "The upstream is rate limiting.", "retryable": True, "retry_after": 2}
    (error,) = frames(Event("error", json.dumps(data)))
    assert error == {
        "error": {
            "message": "The upstream is rate limiting.",
            "type": "rate_limit_error",
            "param": None,
            "code": "rate_limited",
            "retryable": True,
            "retry_after": 2,
        }
    }


def test_every_frame_has_the_event_logs_id_so_a_reader_can_resume() -> None:
    log = EventLog("run_abc", max_events=100, max_bytes=1 << 20, window=100, encoder=CHUNKS)
    for event in (Event("metadata", "{}"), Event("data", json.dumps("a")), END):
        log.append(event)
    events = parse_sse(b"".join(log._frames).decode()).events
    assert [event.id for event in events] == ["run_abc:0", "run_abc:1", "run_abc:2", "run_abc:2", "run_abc:2"]
    assert log.parse_id("run_abc:1") == 2


def test_a_reader_that_fell_behind_gets_an_openai_error() -> None:
    log = EventLog("run_abc", max_events=100, max_bytes=1 << 20, window=100, encoder=CHUNKS)
    assert json.loads(log._replay_unavailable.decode().removeprefix("data: "))["error"]["code"] == "replay_unavailable"


def test_a_whole_answer_is_one_chat_completion() -> None:
    body = completion("run_abc", "haystream-chat", 5, "Hello.", "stop", {"total_tokens": 4})
    assert body["id"] == "chatcmpl-abc" and body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Hello.", "refusal": None}
    assert body["choices"][0]["finish_reason"] == "stop" and body["usage"] == {"total_tokens": 4}


def test_an_unknown_error_type_is_a_server_error() -> None:
    error = run_error_object({"type": "internal", "message": "m", "retryable": False})["error"]
    assert error["type"] == "server_error" and error["code"] == "internal"
