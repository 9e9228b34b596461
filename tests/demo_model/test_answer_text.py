"""What text the demo model answers, and what ``expected_text`` promises a client assembles."""

from __future__ import annotations

import openai
import pytest

from service.demo_model import FAULTS, Behaviour, DemoModelServer, answer_tokens, expected_text
from tests.demo_model.support import PROMPT, fast, stream_text


def test_answer_tokens_echo_the_prompt_and_say_they_are_the_demo() -> None:
    tokens = answer_tokens(PROMPT, None)
    text = "".join(tokens)
    assert "demo model" in text
    assert PROMPT in text
    assert 30 <= len(tokens) <= 60
    assert all(token.endswith(" ") for token in tokens[:-1])
    assert answer_tokens(PROMPT, None) == tokens


def test_answer_tokens_truncate_a_very_long_prompt() -> None:
    tokens = answer_tokens("word " * 10_000, None)
    assert len(tokens) <= 60
    assert "..." in "".join(tokens)


def test_answer_tokens_with_a_count_are_exact_and_unambiguous() -> None:
    assert answer_tokens("anything", 3) == ["tok0 ", "tok1 ", "tok2 "]
    assert answer_tokens("anything", 0) == []


def test_every_fault_name_is_known_to_expected_text() -> None:
    for fault in FAULTS:
        behaviour = Behaviour(tokens=4, fault=fault, fault_after=1, large_chunk_chars=3)
        if fault.startswith("http_"):
            with pytest.raises(ValueError, match=fault):
                expected_text(PROMPT, behaviour)
        else:
            assert expected_text(PROMPT, behaviour).startswith("tok0 ")


def test_token_chars_pads_every_token(server: DemoModelServer, client: openai.OpenAI) -> None:
    server.behaviour = fast(tokens=3, token_chars=10_000)
    text, _ = stream_text(client)
    assert text == expected_text(PROMPT, server.behaviour)
    assert [len(token) for token in answer_tokens(PROMPT, 3, 10_000)] == [10_000] * 3
    assert text.startswith("tok0:") and "tok2:" in text


def test_answer_streams_exactly_the_given_tokens(server: DemoModelServer, client: openai.OpenAI) -> None:
    server.behaviour = fast(answer=("a\u2028b", "\u2029", "c\x85d"))
    text, _ = stream_text(client)
    assert text == expected_text(PROMPT, server.behaviour) == "a\u2028b\u2029c\x85d"
