"""Tests for the built-in demo model server, driven through real sockets and the OpenAI SDK."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionChunk

from service.demo_model import (
    FAULTS,
    Behaviour,
    DemoModelServer,
    RequestRecord,
    answer_tokens,
    expected_text,
    large_chunk_text,
    prompt_behaviour,
)

KEY = "sk-demo-test-key-123"
PROMPT = "What is the capital of France?"
MESSAGES: list[Any] = [{"role": "user", "content": PROMPT}]
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def fast(**overrides: Any) -> Behaviour:
    """A behaviour with no pacing, plus ``overrides``."""
    return Behaviour(**{"token_delay": 0, "first_token_delay": 0, **overrides})


@pytest.fixture
def server() -> Iterator[DemoModelServer]:
    with DemoModelServer(behaviour=fast()) as srv:
        yield srv


@pytest.fixture
def client(server: DemoModelServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=10) as sdk:
        yield sdk


def stream_text(client: openai.OpenAI, prompt: str = PROMPT, **kwargs: Any) -> tuple[str, list[ChatCompletionChunk]]:
    """Stream a completion and return the assembled text and every chunk."""
    messages: list[Any] = [{"role": "user", "content": prompt}]
    stream: openai.Stream[ChatCompletionChunk] = client.chat.completions.create(
        model="demo", messages=messages, stream=True, **kwargs
    )
    chunks = list(stream)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    return text, chunks


def settled(server: DemoModelServer, n: int = 1) -> list[RequestRecord]:
    """The first ``n`` records, once the server has finished with each of them."""
    records = server.wait_for_requests(n)
    assert all(record.closed.wait(1.0) for record in records)
    return records


def raw_stream_lines(server: DemoModelServer) -> list[str]:
    body = {"model": "demo", "messages": MESSAGES, "stream": True}
    with (
        httpx.Client() as http,
        http.stream("POST", f"{server.base_url}/chat/completions", json=body) as response,
    ):
        return list(response.iter_lines())


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


def test_record_carries_the_exact_key_model_and_last_user_prompt(
    server: DemoModelServer, client: openai.OpenAI
) -> None:
    messages: list[Any] = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "second question"},
    ]
    client.chat.completions.create(model="gpt-test", messages=messages, stream=True).close()
    [record] = server.wait_for_requests(1)
    assert record.api_key == KEY
    assert record.model == "gpt-test"
    assert record.prompt == "second question"
    assert record.messages == messages
    assert record.stream is True


def test_two_requests_over_one_pooled_connection_are_both_recorded(server: DemoModelServer) -> None:
    body = {"model": "demo", "messages": MESSAGES, "stream": True}
    peers = []
    limits = httpx.Limits(max_connections=1)
    with httpx.Client(limits=limits) as http:
        for _ in range(2):
            with http.stream("POST", f"{server.base_url}/chat/completions", json=body) as response:
                assert response.headers["content-type"] == "text/event-stream"
                lines = list(response.iter_lines())
                peers.append(response.extensions["network_stream"].get_extra_info("client_addr"))
            assert "data: [DONE]" in lines
    assert peers[0] == peers[1]
    first, second = settled(server, 2)
    assert first is not second
    assert first.completed
    assert second.completed


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


def test_client_closing_mid_answer_is_recorded_promptly(server: DemoModelServer, client: openai.OpenAI) -> None:
    server.behaviour = Behaviour(tokens=50, token_delay=0.2, first_token_delay=0)
    stream = client.chat.completions.create(model="demo", messages=MESSAGES, stream=True)
    next(iter(stream))
    stream.close()
    closed_by_client = time.monotonic()
    [record] = settled(server)
    assert record.client_gone
    assert not record.completed
    assert record.closed_at is not None
    assert record.closed_at - closed_by_client < 1.0
    assert record.tokens_sent < 50


def test_client_leaving_during_a_stall_is_noticed_without_any_write(
    server: DemoModelServer, client: openai.OpenAI
) -> None:
    """Only the EOF watcher can see this: the server writes nothing while stalled."""
    server.behaviour = fast(tokens=10, fault="stall_mid", fault_after=2)
    stream = client.chat.completions.create(model="demo", messages=MESSAGES, stream=True)
    next(iter(stream))
    stream.close()
    [record] = settled(server)
    assert record.client_gone
    assert record.tokens_sent == 2


def test_stall_before_headers_times_out_and_stop_returns_promptly() -> None:
    srv = DemoModelServer(behaviour=Behaviour(fault="stall_before_headers", stall=3600))
    srv.start_in_thread()
    try:
        with (
            openai.OpenAI(base_url=srv.base_url, api_key=KEY, max_retries=0, timeout=0.5) as sdk,
            pytest.raises(openai.APITimeoutError),
        ):
            stream_text(sdk)
        [record] = settled(srv)
        assert record.client_gone
        assert not record.completed
    finally:
        began = time.monotonic()
        srv.stop_thread()
        assert time.monotonic() - began < 2.0


def test_stop_aborts_a_connection_stalled_mid_stream() -> None:
    srv = DemoModelServer(behaviour=fast(tokens=5, fault="stall_mid"))
    srv.start_in_thread()
    outcome: list[BaseException | str] = []

    def consume() -> None:
        with openai.OpenAI(base_url=srv.base_url, api_key=KEY, max_retries=0, timeout=30) as sdk:
            try:
                outcome.append(stream_text(sdk)[0])
            except (httpx.HTTPError, openai.APIError) as exc:
                outcome.append(exc)

    reader = threading.Thread(target=consume)
    reader.start()
    srv.wait_for_requests(1)
    began = time.monotonic()
    srv.stop_thread()
    assert time.monotonic() - began < 2.0
    reader.join(5.0)
    assert len(outcome) == 1
    assert isinstance(outcome[0], BaseException)


def test_throughput_sanity_with_no_token_delay(server: DemoModelServer, client: openai.OpenAI) -> None:
    server.behaviour.tokens = 2000
    text, _ = stream_text(client)
    assert text == "".join(f"tok{i} " for i in range(2000))


def test_health_models_unknown_routes_and_bad_json(server: DemoModelServer) -> None:
    root = server.base_url.removesuffix("/v1")
    with httpx.Client() as http:
        assert http.get(f"{root}/health").text == "ok"
        assert [m["id"] for m in http.get(f"{server.base_url}/models").json()["data"]] == ["demo"]
        missing = http.get(f"{root}/nope")
        assert missing.status_code == 404
        assert "error" in missing.json()
        bad = http.post(f"{server.base_url}/chat/completions", content=b"{nope")
        assert bad.status_code == 400
        assert bad.json()["error"]["type"] == "invalid_request_error"
    assert server.requests == []


@pytest.mark.parametrize(
    ("raw", "status_line"),
    [
        (b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: \xb2\r\n\r\n", b"HTTP/1.1 400 Bad Request"),
        (b"POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", b"HTTP/1.1 411 "),
        (b"nonsense\r\n\r\n", b"HTTP/1.1 400 Bad Request"),
        (b"GET /health HTTP/1.0\r\n\r\n", b"HTTP/1.1 200 OK"),
    ],
)
def test_raw_requests_get_a_response_and_a_closed_connection(
    server: DemoModelServer, raw: bytes, status_line: bytes
) -> None:
    """Regression: a non-ASCII digit in Content-Length used to crash the connection handler."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(raw)
        response = b""
        while data := sock.recv(65536):
            response += data
    assert response.startswith(status_line)
    assert b"Connection: close" in response


def test_start_and_stop_inside_a_running_loop() -> None:
    async def scenario() -> tuple[str, int]:
        srv = DemoModelServer(behaviour=fast(tokens=3))
        await srv.start()
        try:
            async with httpx.AsyncClient() as http:
                body = {"model": "demo", "messages": MESSAGES}
                response = await http.post(f"{srv.base_url}/chat/completions", json=body)
        finally:
            await srv.stop()
        return response.json()["choices"][0]["message"]["content"], len(srv.requests)

    assert asyncio.run(scenario()) == ("tok0 tok1 tok2 ", 1)


def test_every_fault_name_is_known_to_expected_text() -> None:
    for fault in FAULTS:
        behaviour = Behaviour(tokens=4, fault=fault, fault_after=1, large_chunk_chars=3)
        if fault.startswith("http_"):
            with pytest.raises(ValueError, match=fault):
                expected_text(PROMPT, behaviour)
        else:
            assert expected_text(PROMPT, behaviour).startswith("tok0 ")


def test_command_line_serves_until_sigterm() -> None:
    command = [sys.executable, "-m", "service.demo_model", "--port", "0", "--tokens", "2"]
    command += ["--token-delay-ms", "0", "--first-token-ms", "0"]
    with subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True) as proc:
        killer = threading.Timer(20.0, proc.kill)
        killer.start()
        try:
            assert proc.stdout is not None
            base_url = proc.stdout.readline().split()[-1]
            with openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=0) as sdk:
                assert stream_text(sdk)[0] == "tok0 tok1 "
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10.0) == 0
        finally:
            killer.cancel()


def test_fail_first_n_faults_only_the_first_requests(server: DemoModelServer, client: openai.OpenAI) -> None:
    server.behaviour = fast(tokens=2, fault="http_503", fail_first_n=2)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            stream_text(client)
    assert stream_text(client)[0] == "tok0 tok1 "
    server.behaviour = fast(tokens=2, fault="http_503", fail_first_n=1)  # a new behaviour counts afresh
    with pytest.raises(openai.InternalServerError):
        stream_text(client)


def test_by_prompt_picks_a_behaviour_per_request(server: DemoModelServer, client: openai.OpenAI) -> None:
    server.behaviour = fast(tokens=1)
    server.by_prompt["fail"] = fast(fault="http_500")
    with pytest.raises(openai.InternalServerError):
        stream_text(client, prompt="fail")
    assert stream_text(client, prompt="fine")[0] == "tok0 "


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


def test_tokens_sent_is_counted_while_the_stream_runs(server: DemoModelServer, client: openai.OpenAI) -> None:
    server.behaviour = Behaviour(tokens=100, token_delay=0.05, first_token_delay=0)
    stream = client.chat.completions.create(model="demo", messages=MESSAGES, stream=True)
    chunks = iter(stream)
    for _ in range(3):
        next(chunks)
    [record] = server.wait_for_requests(1)
    assert 3 <= record.tokens_sent < 100 and not record.closed.is_set()
    stream.close()


def test_a_prompt_directive_picks_this_requests_behaviour_when_enabled() -> None:
    with (
        DemoModelServer(behaviour=fast(), directives=True) as srv,
        openai.OpenAI(base_url=srv.base_url, api_key=KEY, max_retries=0, timeout=10) as sdk,
    ):
        text, _ = stream_text(sdk, "[[demo tokens=3]] hi")
        assert text == "tok0 tok1 tok2 "
        with pytest.raises(openai.RateLimitError):
            stream_text(sdk, "[[demo fault=http_429]] hi")
        cut = "[[demo tokens=8 fault=close_mid fault_after=2]] hi"
        assert expected_text(cut, prompt_behaviour(cut, srv.behaviour)) == "tok0 tok1 "
        text, chunks = stream_text(sdk, cut)
        assert text == "tok0 tok1 " and all(c.choices[0].finish_reason is None for c in chunks if c.choices)
        text, _ = stream_text(sdk)  # no directive: the server's own behaviour
        assert text == expected_text(PROMPT, srv.behaviour)
        assert srv.behaviour == fast(), "a directive must not change the server's behaviour"


def test_prompt_directives_are_plain_text_unless_enabled(server: DemoModelServer, client: openai.OpenAI) -> None:
    prompt = "[[demo fault=http_500]] is this a fault?"
    text, _ = stream_text(client, prompt)
    assert text == expected_text(prompt, server.behaviour)
    assert "[[demo fault=http_500]]" in text


@pytest.mark.parametrize("directive", ["[[demo colour=blue]]", "[[demo tokens=many]]", "[[demo fault=explode]]"])
def test_a_bad_directive_is_a_400(directive: str) -> None:
    with DemoModelServer(behaviour=fast(), directives=True) as srv, httpx.Client() as http:
        body = {"model": "demo", "messages": [{"role": "user", "content": directive}], "stream": True}
        response = http.post(f"{srv.base_url}/chat/completions", json=body)
    assert response.status_code == 400
    assert "directive" in response.json()["error"]["message"] or "fault" in response.json()["error"]["message"]


def test_prompt_behaviour_overrides_only_what_the_directive_names() -> None:
    base = Behaviour(tokens=5, token_delay=0.1, fault="reset", fault_after=3)
    changed = prompt_behaviour("x [[demo token_delay=0 fault=none tokens=none]] y", base)
    assert changed == Behaviour(tokens=None, token_delay=0.0, fault=None, fault_after=3)
    assert prompt_behaviour("no directive here", base) == base
