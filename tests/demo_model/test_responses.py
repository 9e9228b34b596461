"""Clean answers, streamed and as one JSON body, through the OpenAI SDK."""

from __future__ import annotations

import openai

from service.demo_model import Behaviour, DemoModelServer, answer_tokens, expected_text
from tests.demo_model.support import MESSAGES, PROMPT, settled, stream_text


def test_streamed_text_matches_expected_text_for_a_prompt(server: DemoModelServer, client: openai.OpenAI) -> None:
    text, chunks = stream_text(client)
    assert text == expected_text(PROMPT, server.behaviour)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(chunk.id == chunks[0].id for chunk in chunks)


def test_streamed_text_for_a_fixed_token_count(server: DemoModelServer, client: openai.OpenAI) -> None:
    server.behaviour.tokens = 25
    text, _ = stream_text(client)
    assert text == "".join(f"tok{i} " for i in range(25))
    [record] = settled(server)
    assert record.completed
    assert record.tokens_sent == 25
    assert not record.client_gone


def test_usage_chunk_is_sent_when_include_usage_is_requested(server: DemoModelServer, client: openai.OpenAI) -> None:
    server.behaviour.tokens = 7
    _, chunks = stream_text(client, prompt="one two three", stream_options={"include_usage": True})
    assert chunks[-1].choices == []
    usage = chunks[-1].usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (3, 7, 10)
    _, without = stream_text(client)
    assert all(chunk.usage is None for chunk in without)


def test_non_streaming_response_carries_the_joined_answer(server: DemoModelServer, client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="demo", messages=MESSAGES)
    assert completion.choices[0].message.content == expected_text(PROMPT, server.behaviour)
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == len(answer_tokens(PROMPT, None))
    [record] = settled(server)
    assert record.stream is False
    assert record.completed


def test_throughput_sanity_with_no_token_delay(server: DemoModelServer, client: openai.OpenAI) -> None:
    server.behaviour.tokens = 2000
    text, _ = stream_text(client)
    assert text == "".join(f"tok{i} " for i in range(2000))


def test_tokens_sent_is_counted_while_the_stream_runs(server: DemoModelServer, client: openai.OpenAI) -> None:
    server.behaviour = Behaviour(tokens=100, token_delay=0.05, first_token_delay=0)
    stream = client.chat.completions.create(model="demo", messages=MESSAGES, stream=True)
    chunks = iter(stream)
    for _ in range(3):
        next(chunks)
    [record] = server.wait_for_requests(1)
    assert 3 <= record.tokens_sent < 100 and not record.closed.is_set()
    stream.close()
