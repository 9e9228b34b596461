"""The service's one settings class, read once at start-up and passed into `create_app`.

Every field can be set from the environment with the `HAYSTREAM_` prefix. The upstream base URL
also honours the OpenAI SDK's own `OPENAI_BASE_URL`, so an operator who already points tools at
Ollama, vLLM or llama.cpp's server that way does not have to say it twice.
"""

from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Seconds = Annotated[float, Field(gt=0, le=3600)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HAYSTREAM_", extra="ignore", frozen=True)

    # Upstream (any OpenAI-compatible chat-completions server).
    base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("HAYSTREAM_BASE_URL", "OPENAI_BASE_URL", "base_url"),
        description="Upstream base URL; unset means OpenAI itself.",
    )
    model: str = Field(default="gpt-4o-mini", min_length=1, max_length=200)
    upstream_timeout: Seconds = Field(default=30.0, description="Connect/read timeout for the upstream.")
    upstream_max_retries: int = Field(default=2, ge=0, le=10)
    upstream_connections: int = Field(default=512, ge=1, le=10_000)
    include_usage: bool = Field(default=True, description="Ask the upstream for token usage in the stream.")
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=1_000_000)

    # Admission and streaming.
    max_streams: int = Field(default=256, ge=1, le=4096, description="Concurrent streams; the 503 limit.")
    retry_after: int = Field(default=1, ge=1, le=3600, description="Retry-After seconds on a 503.")
    queue_size: int = Field(default=64, ge=1, le=10_000, description="Chunks buffered per stream.")
    keepalive_interval: Seconds = Field(default=15.0)
    max_query_chars: int = Field(default=8_000, ge=1, le=1_000_000)

    # The built-in demo model server.
    demo: bool = Field(default=False, description="Serve answers from the built-in demo model.")
    demo_token_delay: Annotated[float, Field(ge=0, le=10)] = 0.05
    demo_first_token_delay: Annotated[float, Field(ge=0, le=60)] = 0.3

    log_level: str = Field(default="info", pattern="^(critical|error|warning|info|debug)$")
    log_format: Literal["text", "json"] = Field(default="text", description="`json`: one JSON object per line.")

    @model_validator(mode="after")
    def _check(self) -> "Settings":
        if self.keepalive_interval >= 60:
            # nginx's default proxy_read_timeout is 60 s: a slower keep-alive lets it cut idle streams.
            raise ValueError("keepalive_interval must be under 60 s (nginx's default read timeout)")
        return self

    def generation_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if self.include_usage:
            kwargs["stream_options"] = {"include_usage": True}
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        if self.max_completion_tokens is not None:
            kwargs["max_completion_tokens"] = self.max_completion_tokens
        return kwargs
