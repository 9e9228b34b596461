"""`prepare` with the history and options a client sends (/v1/chat/completions): the turns go to the
template, the options over the settings' own to the generator, and no conversation is opened."""

from typing import Any

from service.answering.answers import Context, prepare
from service.answering.conversations import Conversations
from service.answering.guard import InputGuard
from service.http.openai_schemas import ChatCompletionRequest
from service.store.conversations import InPlace, MemoryConversationStore
from tests.conftest import SettingsFactory

HISTORY = ({"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"})


def context(make_settings: SettingsFactory, store: MemoryConversationStore | None = None, **overrides: Any) -> Context:
    conversations = Conversations(InPlace(store or MemoryConversationStore(10, 10)))
    return Context(make_settings(**overrides), conversations, None, InputGuard(()))


def generation_kwargs(answer: Any) -> dict[str, Any]:
    pipeline = answer.factory(None, None)
    kwargs: dict[str, Any] = pipeline.get_component("llm").generation_kwargs
    return kwargs


async def test_the_clients_turns_are_the_history_and_no_conversation_is_opened(make_settings: SettingsFactory) -> None:
    store = MemoryConversationStore(10, 10)
    answer = await prepare(context(make_settings, store), "sk-x", "And now?", "chat", None, history=HISTORY)
    assert answer.inputs["history"] == [dict(turn) for turn in HISTORY]
    assert answer.conversation is None and len(store) == 0


async def test_the_requests_options_win_over_the_settings(make_settings: SettingsFactory) -> None:
    answers = context(make_settings, temperature=1.5, max_completion_tokens=900)
    body = ChatCompletionRequest.model_validate(
        {
            "model": "haystream-chat",
            "messages": [{"role": "user", "content": "Hi"}],
            "temperature": 0.2,
            "max_tokens": 50,
            "user": "user-7",
            "stream_options": {"include_usage": True},
        }
    )
    answer = await prepare(answers, "sk-x", "Hi", "chat", None, generation=body.generation())
    kwargs = generation_kwargs(answer)
    assert kwargs["temperature"] == 0.2 and kwargs["max_completion_tokens"] == 50 and kwargs["user"] == "user-7"
    assert kwargs["stream_options"] == {"include_usage": True}


async def test_without_options_the_settings_apply(make_settings: SettingsFactory) -> None:
    answers = context(make_settings, temperature=1.5, include_usage=False)
    answer = await prepare(answers, "sk-x", "Hi", "chat", None, generation={})
    assert generation_kwargs(answer) == {"temperature": 1.5}


def test_max_completion_tokens_wins_over_the_older_max_tokens() -> None:
    body = ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5, "max_completion_tokens": 7}
    )
    assert body.generation() == {"max_completion_tokens": 7}
