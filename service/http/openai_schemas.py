"""/v1/chat/completions' request and /v1/models' response, as OpenAI's API shapes them.

Unknown fields are ignored, not refused (unlike POST /chat's body): OpenAI clients send many
(`n`, `top_p`, `tools`, `metadata`, ...) and expect a compatible server to accept them. What the
service does honour: `model` (the pipeline), `messages` (string or text-part content), `stream`,
`stream_options.include_usage`, `temperature`, `max_tokens` / `max_completion_tokens` and `user`.

The last message is the query and must be the user's; the ones before it are the history the
pipeline's template renders (`system` and `developer` messages as `system` turns).
"""

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from service.asks import Ask
from service.errors import Unauthenticated
from service.http.schemas import is_header_safe_key

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore", hide_input_in_errors=True)

    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore", hide_input_in_errors=True)

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None

    @property
    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", hide_input_in_errors=True)

    model: Annotated[str, Field(min_length=1, max_length=200, description="One of GET /v1/models' ids.")]
    messages: Annotated[list[Message], Field(min_length=1, description="The last one is the user's question.")]
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    temperature: Annotated[float | None, Field(ge=0, le=2)] = None
    max_tokens: Annotated[int | None, Field(ge=1, le=1_000_000)] = None
    max_completion_tokens: Annotated[int | None, Field(ge=1, le=1_000_000)] = None
    user: Annotated[str | None, Field(max_length=256)] = None

    @field_validator("messages")
    @classmethod
    def _ends_with_a_question(cls, messages: list[Message]) -> list[Message]:
        if messages[-1].role != "user":
            raise ValueError("the last message must be the user's")
        if not messages[-1].text.strip():
            raise ValueError("the last message must have text")
        if any(_CONTROL.search(message.text) for message in messages):
            raise ValueError("must not contain control characters (tab and newlines are fine)")
        return messages

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage

    def generation(self) -> dict[str, object]:
        """What this request changes in the upstream call, over the settings' own options."""
        options: dict[str, object] = {}
        if self.temperature is not None:
            options["temperature"] = self.temperature
        if (limit := self.max_completion_tokens or self.max_tokens) is not None:
            options["max_completion_tokens"] = limit
        if self.user is not None:
            options["user"] = self.user
        if self.include_usage:
            options["stream_options"] = {"include_usage": True}
        return options


def ask_of_completion(body: ChatCompletionRequest, pipeline: str, api_key: str) -> Ask:
    history: tuple[Mapping[str, str], ...] = tuple(
        {"role": _ROLES[message.role], "content": message.text} for message in body.messages[:-1]
    )
    return Ask(api_key, body.messages[-1].text, pipeline, history=history, generation=body.generation())


def bearer_key(authorization: str | None) -> str:
    """The caller's upstream key, which OpenAI's clients send only as `Authorization: Bearer <key>`."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    if not authorization:
        raise Unauthenticated("You didn't provide an API key: send it as 'Authorization: Bearer <key>'.")
    if scheme.lower() != "bearer" or not is_header_safe_key(token):
        raise Unauthenticated("The Authorization header must be 'Bearer <key>' with a printable ASCII key.")
    return token


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "haystream"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIError(BaseModel):
    """Every refusal on /v1 paths, before a stream and as a mid-stream `data:` event."""

    error: OpenAIErrorDetail


def models_of(names: list[str], created: int) -> dict[str, Any]:
    return ModelList(data=[Model(id=name, created=created) for name in names]).model_dump()
