"""Injected faults: HTTP errors, broken and odd streams, and what the client sees of each."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from service.demo_model import DemoModelServer, answer_tokens, expected_text, large_chunk_text
from tests.demo_model.support import KEY, MESSAGES, PROMPT, fast, raw_stream_lines, settled, stream_text


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("http_401", openai.AuthenticationError),
        ("http_403", openai.PermissionDeniedError),
        ("http_404", openai.NotFoundError),
        ("http_429", openai.RateLimitError),
        ("http_500", openai.InternalServerError),
        ("http_503", openai.InternalServerError),
    ],
)
def test_http_faults_raise_the_matching_openai_error(
    server: DemoModelServer, client: openai.OpenAI, fault: str, error: type[openai.APIStatusError]
) -> None:
    server.behaviour.fault = fault
    with pytest.raises(error) as caught:
        stream_text(client)
    assert caught.value.status_code == int(fault.removeprefix("http_"))
    body = caught.value.response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    if fault == "http_401":
        assert KEY in caught.value.message
    if fault == "http_429":
        assert caught.value.response.headers["retry-after"] == "1"


@pytest.mark.parametrize(
    ("fault", "error"),
    [("reset", httpx.ReadError), ("malformed", json.JSONDecodeError)],
)
def test_broken_streams_make_the_client_raise(
    server: DemoModelServer, client: openai.OpenAI, fault: str, error: type[Exception]
) -> None:
    """reset must be a real RST (ECONNRESET), not a graceful close of a truncated body."""
    server.behaviour = fast(tokens=10, fault=fault, fault_after=3)
    with pytest.raises(error):
        stream_text(client)
    [record] = settled(server)
    assert record.tokens_sent == 3
    assert record.completed


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("reset", openai.APIConnectionError),
        ("close_mid", openai.APIConnectionError),
        ("malformed", json.JSONDecodeError),
    ],
)
def test_non_streaming_faults_make_the_client_raise(
    server: DemoModelServer, client: openai.OpenAI, fault: str, error: type[Exception]
) -> None:
    server.behaviour = fast(tokens=10, fault=fault, fault_after=3)
    with pytest.raises(error):
        client.chat.completions.create(model="demo", messages=MESSAGES)
    [record] = settled(server)
    assert record.completed
    assert record.tokens_sent == 0


def test_non_streaming_large_chunk_is_part_of_the_message(server: DemoModelServer, client: openai.OpenAI) -> None:
    server.behaviour = fast(tokens=4, fault="large_chunk", fault_after=1, large_chunk_chars=50_000)
    completion = client.chat.completions.create(model="demo", messages=MESSAGES)
    assert completion.choices[0].message.content == expected_text(PROMPT, server.behaviour)


def test_close_mid_ends_the_stream_without_finish_or_done(server: DemoModelServer) -> None:
    server.behaviour = fast(tokens=10, fault="close_mid", fault_after=4)
    lines = raw_stream_lines(server)
    events = [json.loads(line.removeprefix("data: ")) for line in lines if line.startswith("data: ")]
    assert "".join(event["choices"][0]["delta"]["content"] for event in events) == "tok0 tok1 tok2 tok3 "
    assert expected_text(PROMPT, server.behaviour) == "tok0 tok1 tok2 tok3 "
    assert all(event["choices"][0]["finish_reason"] is None for event in events)


def test_empty_chunk_still_yields_the_full_text(server: DemoModelServer, client: openai.OpenAI) -> None:
    server.behaviour.fault = "empty_chunk"
    server.behaviour.fault_after = 2
    text, chunks = stream_text(client)
    assert text == expected_text(PROMPT, server.behaviour) == "".join(answer_tokens(PROMPT, None))
    assert chunks[2].choices[0].delta.content is None


def test_no_done_yields_the_full_text_without_done(server: DemoModelServer, client: openai.OpenAI) -> None:
    server.behaviour.fault = "no_done"
    text, chunks = stream_text(client)
    assert text == expected_text(PROMPT, server.behaviour)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert "data: [DONE]" not in raw_stream_lines(server)


def test_large_chunk_arrives_whole(server: DemoModelServer, client: openai.OpenAI) -> None:
    server.behaviour = fast(tokens=5, fault="large_chunk", fault_after=2, large_chunk_chars=300_000)
    text, _ = stream_text(client)
    assert text == "tok0 tok1 " + large_chunk_text(300_000) + "tok2 tok3 tok4 "
    assert text == expected_text(PROMPT, server.behaviour)
