"""/v1/chat/completions with the official `openai` Python SDK, against the service under uvicorn and
the demo model: the text each client assembles is exactly what the upstream sent, and each failure
is the exception class the SDK raises for the same failure from OpenAI itself."""

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from service.demo_model import Behaviour, DemoModelServer, answer_tokens, expected_text
from tests.conftest import LiveFactory, LiveService
from tests.support.streams import LiveStream
from tests.support.waiting import wait_until

KEY = "sk-openai-SENTINEL-4b7e21"
QUESTION = "What does a compatible endpoint give me?"
MESSAGES: list[Any] = [{"role": "user", "content": QUESTION}]
FAST = Behaviour(tokens=8, first_token_delay=0.0, token_delay=0.0)


@pytest.fixture
def service(live_service: LiveFactory, upstream_server: DemoModelServer) -> LiveService:
    upstream_server.behaviour = FAST
    return live_service()


@pytest.fixture
def client(service: LiveService) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=service.url + "/v1", api_key=KEY, max_retries=0, timeout=30) as sdk:
        yield sdk


def upstream_text(upstream: DemoModelServer) -> str:
    (record,) = upstream.wait_for_requests(1)
    assert record.api_key == KEY
    return expected_text(record.prompt, upstream.behaviour)


def test_models_lists_the_pipelines(client: openai.OpenAI) -> None:
    assert [model.id for model in client.models.list()] == ["haystream-chat"]


def test_a_whole_completion_is_the_upstreams_text(client: openai.OpenAI, upstream_server: DemoModelServer) -> None:
    answer = client.chat.completions.create(model="haystream-chat", messages=MESSAGES)
    assert answer.object == "chat.completion" and answer.model == "haystream-chat"
    assert answer.choices[0].message.role == "assistant" and answer.choices[0].finish_reason == "stop"
    assert answer.choices[0].message.content == upstream_text(upstream_server)
    assert answer.usage is not None and answer.usage.completion_tokens == FAST.tokens


def test_a_streamed_completion_is_the_upstreams_text(client: openai.OpenAI, upstream_server: DemoModelServer) -> None:
    chunks = list(client.chat.completions.create(model="haystream-chat", messages=MESSAGES, stream=True))
    assert {chunk.id for chunk in chunks} == {chunks[0].id} and chunks[0].id.startswith("chatcmpl-")
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [chunk.choices[0].finish_reason for chunk in chunks] == [None] * (len(chunks) - 1) + ["stop"]
    assert all(chunk.usage is None for chunk in chunks)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    assert text == upstream_text(upstream_server)


def test_a_stream_asked_for_usage_ends_with_a_usage_chunk(
    client: openai.OpenAI, upstream_server: DemoModelServer
) -> None:
    stream = client.chat.completions.create(
        model="haystream-chat", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    *chunks, last = list(stream)
    assert last.choices == [] and last.usage is not None and last.usage.completion_tokens == FAST.tokens
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == upstream_text(upstream_server)


async def test_the_async_client_streams_and_answers(service: LiveService, upstream_server: DemoModelServer) -> None:
    async with openai.AsyncOpenAI(base_url=service.url + "/v1", api_key=KEY, max_retries=0) as sdk:
        stream = await sdk.chat.completions.create(model="haystream-chat", messages=MESSAGES, stream=True)
        text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])
        answer = await sdk.chat.completions.create(model="haystream-chat", messages=MESSAGES)
    first, second = upstream_server.wait_for_requests(2)
    assert text == expected_text(first.prompt, FAST)
    assert answer.choices[0].message.content == expected_text(second.prompt, FAST)


def test_earlier_messages_are_the_history_and_unknown_fields_are_ignored(
    client: openai.OpenAI, upstream_server: DemoModelServer
) -> None:
    messages: list[Any] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "First question"}]},
        {"role": "assistant", "content": "First answer"},
        {"role": "user", "content": [{"type": "text", "text": "Second "}, {"type": "text", "text": "question"}]},
    ]
    client.chat.completions.create(
        model="haystream-chat",
        messages=messages,
        temperature=0.25,
        max_tokens=50,
        user="user-7",
        extra_body={"some_future_field": {"nested": True}},
    )
    (record,) = upstream_server.wait_for_requests(1)
    for line in ("system: Be brief.", "user: First question", "assistant: First answer", "user: Second question"):
        assert line in record.prompt
    assert record.prompt.index("First answer") < record.prompt.index("Second question")


def test_no_key_is_an_authentication_error(service: LiveService) -> None:
    sdk = openai.OpenAI(base_url=service.url + "/v1", api_key="not a key", max_retries=0)
    with sdk, pytest.raises(openai.AuthenticationError) as raised:
        sdk.chat.completions.create(model="haystream-chat", messages=MESSAGES)
    assert raised.value.code == "invalid_api_key"
    response = httpx.post(service.url + "/v1/chat/completions", json={"model": "haystream-chat", "messages": MESSAGES})
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize(
    ("fault", "raised"),
    [
        ("http_401", openai.AuthenticationError),
        ("http_429", openai.RateLimitError),
        ("http_500", openai.APIStatusError),
    ],
)
def test_an_upstream_refusal_before_the_first_token_is_the_sdks_error_class(
    client: openai.OpenAI,
    upstream_server: DemoModelServer,
    stream: bool,
    fault: str,
    raised: type[openai.APIStatusError],
) -> None:
    upstream_server.behaviour = Behaviour(fault=fault)
    with pytest.raises(raised) as error:
        list(client.chat.completions.create(model="haystream-chat", messages=MESSAGES, stream=stream))
    assert KEY not in str(error.value.body) and KEY not in error.value.response.text
    if fault == "http_429":
        assert error.value.response.headers["retry-after"] == "1"


def test_an_error_mid_stream_is_an_api_error(client: openai.OpenAI, upstream_server: DemoModelServer) -> None:
    upstream_server.behaviour = Behaviour(tokens=8, fault="reset", fault_after=3, first_token_delay=0, token_delay=0)
    texts: list[str] = []
    stream = client.chat.completions.create(model="haystream-chat", messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIError) as raised:
        texts.extend(chunk.choices[0].delta.content or "" for chunk in stream)
    assert not isinstance(raised.value, openai.APIStatusError)
    assert raised.value.code == "upstream_unavailable"
    (record,) = upstream_server.wait_for_requests(1)
    assert "".join(texts) == "".join(answer_tokens(record.prompt, 8)[:3])


@pytest.mark.parametrize(
    ("body", "raised", "param"),
    [
        ({"model": "gpt-nope", "messages": MESSAGES}, openai.NotFoundError, "model"),
        (
            {"model": "haystream-chat", "messages": [{"role": "assistant", "content": "hi"}]},
            openai.BadRequestError,
            "messages",
        ),
        ({"model": "haystream-documents", "messages": MESSAGES}, openai.NotFoundError, "model"),
        ({"model": "haystream-chat", "messages": MESSAGES, "temperature": 7}, openai.BadRequestError, "temperature"),
    ],
    ids=["unknown model", "no user message last", "documents not configured", "temperature out of range"],
)
def test_a_refused_request_is_the_sdks_error_class(
    client: openai.OpenAI, body: dict[str, Any], raised: type[openai.APIStatusError], param: str
) -> None:
    with pytest.raises(raised) as error:
        client.chat.completions.create(**body)
    assert error.value.param == param


def test_a_service_at_capacity_is_a_server_error_after_the_sdks_own_retries(
    live_service: LiveFactory, upstream_server: DemoModelServer
) -> None:
    upstream_server.behaviour = Behaviour(tokens=100, first_token_delay=0, token_delay=0.1)
    service = live_service(max_streams=1, runs_max_retained=1)
    body = {"model": "haystream-chat", "messages": MESSAGES, "stream": True}
    with LiveStream(service.client, body, {"authorization": f"Bearer {KEY}"}, url="/v1/chat/completions") as busy:
        assert busy.next_event() is not None
        sdk = openai.OpenAI(base_url=service.url + "/v1", api_key=KEY, max_retries=1)
        with sdk, pytest.raises(openai.InternalServerError) as error:
            sdk.chat.completions.create(model="haystream-chat", messages=MESSAGES)
    assert error.value.status_code == 503 and error.value.code == "at_capacity"
    assert error.value.response.headers["retry-after"] == "1"
    wait_until(lambda: service.state.admission.active == 0, message="the busy run to be released")
