"""The server's routes, request records, clients that leave, and starting and stopping it."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx
import openai
import pytest

from service.demo_model import Behaviour, DemoModelServer
from tests.demo_model.support import KEY, MESSAGES, fast, settled, stream_text


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
