"""Request and response bodies."""

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from service.answering.conversations import is_valid_id as is_valid_conversation_id
from service.asks import Ask
from service.errors import InvalidRequest

# Printable ASCII, no spaces: anything else cannot travel in an Authorization header.
_KEY_CHARS = re.compile(r"[\x21-\x7e]+")
# C0 controls and DEL, except tab, newline and carriage return, which questions legitimately hold.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

MAX_KEY_CHARS = 512


def is_header_safe_key(key: str) -> bool:
    """The one rule for a key, wherever it came from: 1-512 printable ASCII characters, no spaces."""
    return len(key) <= MAX_KEY_CHARS and _KEY_CHARS.fullmatch(key) is not None


class ChatRequest(BaseModel):
    """Unknown fields are rejected, so a misspelt field fails loudly instead of being ignored."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    query: Annotated[str, Field(min_length=1, description="The question; at most HAYSTREAM_MAX_QUERY_CHARS.")]
    api_key: Annotated[
        SecretStr | None,
        Field(
            default=None,
            max_length=MAX_KEY_CHARS,
            description="The caller's OpenAI key; or send it as a Bearer token.",
        ),
    ] = None

    conversation_id: Annotated[
        str | None,
        Field(
            default=None,
            max_length=64,
            description='"new" to start a conversation, or an id from an earlier metadata event.',
        ),
    ] = None
    pipeline: Annotated[str, Field(default="chat", max_length=64, description='"chat" or "documents".')] = "chat"
    stream: Annotated[bool | None, Field(default=None, description="false: one JSON answer instead of a stream.")] = (
        None
    )

    @field_validator("conversation_id")
    @classmethod
    def _conversation_id_is_well_formed(cls, value: str | None) -> str | None:
        if value is not None and not is_valid_conversation_id(value):
            raise ValueError('must be "new" or an id the service issued (conv_ and 32 URL-safe characters)')
        return value

    @field_validator("query")
    @classmethod
    def _query_has_text(cls, query: str) -> str:
        if not query.strip():
            raise ValueError("must not be empty or only whitespace")
        if _CONTROL.search(query):
            raise ValueError("must not contain control characters (tab and newlines are fine)")
        return query

    @field_validator("api_key")
    @classmethod
    def _key_is_header_safe(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and not is_header_safe_key(key.get_secret_value()):
            raise ValueError("must be non-empty printable ASCII without spaces")
        return key


class ErrorBody(BaseModel):
    """Every refusal before a stream starts. `errors` names what in the request was at fault (a field,
    a header, the body, the path, the method), one entry each; it is empty when nothing was (a 503)."""

    type: str
    message: str
    retryable: bool
    errors: list[dict[str, str]] = Field(default_factory=list)


def ask_of(body: ChatRequest, authorization: str | None) -> Ask:
    """The question and the caller's key: the body's key wins, else a Bearer token, else a refusal."""
    return Ask(_api_key(body, authorization), body.query, body.pipeline, body.conversation_id)


def _api_key(body: ChatRequest, authorization: str | None) -> str:
    if body.api_key is not None:
        return body.api_key.get_secret_value()
    if authorization:
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not is_header_safe_key(token):
            raise InvalidRequest("authorization", "must be 'Bearer <key>' with a printable ASCII key")
        return token
    raise InvalidRequest("api_key", "is required (in the body, or as an 'Authorization: Bearer' header)")
