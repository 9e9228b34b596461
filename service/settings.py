"""The service's one settings class, read once at start-up and passed into `create_app`.

Every field can be set from the environment with the `HAYSTREAM_` prefix. The upstream base URL
also honours the OpenAI SDK's own `OPENAI_BASE_URL`, so an operator who already points tools at
Ollama, vLLM or llama.cpp's server that way does not have to say it twice.

`HAYSTREAM_DEMO=true` means what `--demo` does: without a `HAYSTREAM_DOCUMENTS_DIR`, the `documents`
pipeline answers from the sample documents (the default of `documents_dir` reads `demo`). That path is
the one thing imported from the rest of the project: a constant of the `pipelines` package's root,
which imports no Haystack.

CORS origins are checked to be bare origins (`https://app.example.com`, no path, no trailing
slash): a browser's `Origin` header never has either, so such an entry would silently never match.
"""

import json
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from pipelines import SAMPLE_DOCUMENTS

Seconds = Annotated[float, Field(gt=0, le=3600)]

_ORIGIN = re.compile(r"https?://([a-z0-9-]+(\.[a-z0-9-]+)*|\[[0-9a-f:.]+\])(:[0-9]{1,5})?")
STORE_SCHEMES = ("memory", "redis", "rediss", "unix")
MAX_QUERY_BYTES_PER_CHAR = 4  # UTF-8's longest character, as browsers' JSON.stringify sends it
BODY_OVERHEAD = 1024  # the key, the field names and JSON punctuation


class MaxTokensField(StrEnum):
    """The request field that carries `max_completion_tokens`: servers know one name or the other.

    OpenAI renamed `max_tokens` to `max_completion_tokens`, and its reasoning models (o1, o3, gpt-5)
    refuse `max_tokens` with a 400. llama-cpp-python's server knows only `max_tokens` and ignores the
    new name without a word, so the cap silently does not apply; sending both is refused by OpenAI.
    vLLM accepts either. For another local server, check its docs (many document only `max_tokens`).
    """

    MAX_COMPLETION_TOKENS = "max_completion_tokens"  # OpenAI, vLLM
    MAX_TOKENS = "max_tokens"  # llama-cpp-python, and servers that predate the rename


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HAYSTREAM_", extra="ignore", frozen=True)

    # Upstream (any OpenAI-compatible chat-completions server).
    base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("HAYSTREAM_BASE_URL", "OPENAI_BASE_URL", "base_url"),
        description="Upstream base URL; unset means OpenAI itself.",
    )
    model: str = Field(
        default="gpt-4o-mini",
        min_length=1,
        max_length=200,
        description="Model name sent upstream (`demo` with --demo).",
    )
    upstream_timeout: Seconds = Field(
        default=30.0,
        description="Seconds: connect timeout, and the longest gap between two reads of an upstream's answer.",
    )
    upstream_first_byte_timeout: Seconds = Field(
        default=10.0,
        description="Seconds from taking a connection (connecting included) to the upstream's response headers; "
        "independent of upstream_timeout. Each try gets it, so with the defaults (10 s, 2 retries) a stalled "
        "upstream fails after at most 3 x 10 s + the SDK's backoff (under 1.5 s) = 31.5 s, against 93 s with the "
        "30 s read timeout alone. Raise it for a server that answers only once it has loaded the model "
        "(Ollama's first request, say) or processed a long prompt.",
    )
    upstream_max_retries: int = Field(default=2, ge=0, le=10, description="OpenAI SDK retries before the first chunk.")
    upstream_connections: int = Field(default=512, ge=1, le=10_000, description="The shared upstream pool's size.")
    include_usage: bool = Field(default=True, description="Ask the upstream for token usage in the stream.")
    validate_chunks: bool = Field(
        default=True,
        description="Parse streamed chunks against OpenAI's schema (faster); `false` for a server whose chunks differ "
        "from it, which otherwise ends streams with `upstream_malformed`.",
    )
    temperature: float | None = Field(default=None, ge=0, le=2, description="Sampling temperature.")
    max_completion_tokens: int | None = Field(
        default=None, ge=1, le=1_000_000, description="Cap on generated tokens, sent as `max_tokens_field`."
    )
    max_tokens_field: MaxTokensField = Field(
        default=MaxTokensField.MAX_COMPLETION_TOKENS,
        description="Name the cap is sent under: `max_completion_tokens` (OpenAI, vLLM) or `max_tokens` "
        "(llama-cpp-python, which ignores the other name; see `MaxTokensField`).",
    )

    # Admission and streaming.
    max_streams: int = Field(default=256, ge=1, le=4096, description="Concurrent streams; the 503 limit.")
    max_loop_lag_ms: int = Field(
        default=5,
        ge=1,
        le=10_000,
        description="New streams get a 503 while a callback waits this many ms to run on the event loop "
        "(smoothed; service/ops/loop_lag.py, docs/performance.md). 10,000 all but turns it off.",
    )
    retry_after: int = Field(default=1, ge=1, le=3600, description="Retry-After seconds on a 503.")
    queue_size: int = Field(default=64, ge=1, le=10_000, description="Chunks buffered per stream.")
    keepalive_interval: Seconds = Field(
        default=15.0, description="Seconds of silence before a keep-alive comment; under 60 (nginx's read timeout)."
    )
    max_query_chars: int = Field(default=8_000, ge=1, le=1_000_000, description="Longest accepted `query`.")
    max_body_bytes: int = Field(
        default=64 * 1024, ge=1024, le=16 * 1024 * 1024, description="Largest accepted request body; over it, 413."
    )
    send_timeout: Seconds = Field(
        default=30.0,
        description="Seconds a client may take no bytes before it is dropped; its run is then cancelled after "
        "the grace that applies.",
    )

    # Resumable runs (service/streaming/held_run.py, service/streaming/event_log.py, service/store/runs.py).
    resume_grace: Seconds = Field(
        default=15.0,
        description="Seconds a run with no reader waits for one (POST /runs; POST /chat with Idempotency-Key).",
    )
    chat_resume_grace: Annotated[float, Field(ge=0, le=3600)] = Field(
        default=0.0, description="The same for a POST /chat without Idempotency-Key; 0 cancels at once."
    )
    replay_max_events: int = Field(default=10_000, ge=16, le=1_000_000, description="Events a run keeps for replay.")
    replay_max_bytes: int = Field(
        default=1024 * 1024, ge=4096, le=256 * 1024 * 1024, description="Bytes of events a run keeps for replay."
    )
    runs_max_retained: int = Field(
        default=1024, ge=1, le=100_000, description="Runs held at once, running or finished; over it, 503."
    )
    runs_retention: Seconds = Field(default=60.0, description="Seconds a finished run stays resumable.")
    run_max_duration: Annotated[float, Field(gt=0, le=86_400)] = Field(
        default=600.0, description="A run still going after this many seconds ends with a run_timeout error."
    )

    # Where runs, their events and Idempotency-Keys live: this process (memory://) or a shared Redis.
    store_url: str = Field(
        default="memory://",
        description="memory:// (one process), or redis://[:password@]host:port/db, rediss:// (TLS), unix:///path.",
    )
    store_lease: Annotated[float, Field(ge=0.3, le=60)] = Field(
        default=3.0,
        description="Seconds a process counts as alive in the shared store after its last heartbeat (every third).",
    )

    # The built-in demo model server.
    demo: bool = Field(default=False, description="Serve answers from the built-in demo model.")
    demo_token_delay: Annotated[float, Field(ge=0, le=10)] = Field(
        default=0.05, description="Demo model: seconds between tokens."
    )
    demo_first_token_delay: Annotated[float, Field(ge=0, le=60)] = Field(
        default=0.3, description="Demo model: seconds before the first token."
    )

    # Cross-origin use (none by default: the demo page is same-origin).
    cors_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="Origins allowed to call the API from a browser: a JSON list or comma-separated."
    )
    cors_allow_credentials: bool = Field(default=False, description="Let those origins send cookies/credentials.")

    # Conversations (multi-turn chat): with memory://, the most recent `max_conversations`, least recently
    # used out first; with Redis, each lives `conversation_ttl` seconds after its last use (TTL for LRU).
    max_conversations: int = Field(default=1000, ge=1, le=1_000_000, description="Conversations kept (memory://).")
    conversation_max_messages: int = Field(
        default=40, ge=2, le=10_000, description="Messages kept per conversation (user + assistant); oldest dropped."
    )
    conversation_ttl: Annotated[float, Field(gt=0, le=30 * 86_400)] = Field(
        default=3600.0, description="Seconds a conversation is kept after its last use (a shared store only)."
    )

    # Answering from documents: a folder of .md/.txt files, read once at start-up.
    documents_dir: Path | None = Field(
        default_factory=lambda values: SAMPLE_DOCUMENTS if values.get("demo") else None,
        description="The folder the `documents` pipeline answers from; with `demo` and unset, the sample documents.",
    )
    documents_top_k: int = Field(default=3, ge=1, le=50, description="Documents retrieved into each prompt.")

    # The input guard: questions holding one of these terms get a canned refusal, no upstream call.
    blocked_terms: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="Blocked words or phrases: a JSON list or comma-separated; case-insensitive."
    )
    guard_message: str = Field(
        default="Sorry, I can't help with that request.",
        min_length=1,
        max_length=2000,
        description="The guard's refusal text.",
    )

    # Shutdown: how long running streams may take to finish after SIGTERM before they are ended.
    shutdown_grace: Annotated[float, Field(ge=0, le=300)] = Field(
        default=20.0, description="Seconds running streams may take to finish after SIGTERM."
    )

    # OpenTelemetry (service/ops/tracing.py): on with the standard OTEL_* variables; never content unless this.
    trace_content: bool = Field(
        default=False, description="Put questions and answers in spans (gen_ai.input/output.messages, Haystack's)."
    )

    log_level: str = Field(default="info", pattern="^(critical|error|warning|info|debug)$", description="Log level.")
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="`text` (`key=value`, for people) or `json` (one object per line, for log shippers).",
    )

    @field_validator("cors_origins", "blocked_terms", mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        value = value.strip()
        if value.startswith("["):
            try:
                return json.loads(value)
            except ValueError:
                raise ValueError("starts with '[' but is not a JSON list") from None
        return [origin.strip() for origin in value.split(",") if origin.strip()]

    @field_validator("store_url")
    @classmethod
    def _check_store_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in STORE_SCHEMES:
            raise ValueError(f"must start with one of {', '.join(s + '://' for s in STORE_SCHEMES)}")
        if parts.scheme == "memory" and (parts.netloc or parts.path or parts.query):
            raise ValueError("memory:// takes nothing after the scheme")
        if parts.scheme in ("redis", "rediss") and not parts.hostname:
            raise ValueError("a redis:// or rediss:// URL needs a host, as in redis://127.0.0.1:6379/0")
        if parts.scheme == "unix" and not parts.path:
            raise ValueError("a unix:// URL needs the socket's path, as in unix:///run/redis.sock")
        return url

    @property
    def redacted_store_url(self) -> str:
        return redacted_url(self.store_url)

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, origins: tuple[str, ...]) -> tuple[str, ...]:
        checked = tuple(origin.lower() for origin in origins)
        for origin in checked:
            if origin != "*" and not _ORIGIN.fullmatch(origin):
                raise ValueError(f"{origin!r} is not an origin like 'https://app.example.com' (no path or slash)")
        return checked

    @field_validator("blocked_terms")
    @classmethod
    def _check_terms(cls, terms: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(term.strip() for term in terms if term.strip())

    @model_validator(mode="after")
    def _check(self) -> "Settings":
        if self.keepalive_interval >= 60:
            # nginx's default proxy_read_timeout is 60 s: a slower keep-alive lets it cut idle streams.
            raise ValueError("keepalive_interval must be under 60 s (nginx's default read timeout)")
        if self.cors_allow_credentials and "*" in self.cors_origins:
            # Any site could then make a user's browser call the API with the user's credentials.
            raise ValueError("cors_origins '*' cannot be combined with cors_allow_credentials: list the origins")
        if self.runs_max_retained < self.max_streams:
            raise ValueError("runs_max_retained must be at least max_streams: every running stream is a held run")
        if self.max_body_bytes < MAX_QUERY_BYTES_PER_CHAR * self.max_query_chars + BODY_OVERHEAD:
            # Else a query within max_query_chars could be refused as too large, depending on its characters.
            raise ValueError("max_body_bytes must hold a query of max_query_chars (4 UTF-8 bytes each) plus 1 KiB")
        return self

    def generation_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if self.include_usage:
            kwargs["stream_options"] = {"include_usage": True}
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        if self.max_completion_tokens is not None:
            kwargs[self.max_tokens_field.value] = self.max_completion_tokens
        return kwargs


def redacted_url(url: str) -> str:
    """`url` with any password replaced by `***`: what logs and error messages may show."""
    parts = urlsplit(url)
    query = re.sub(r"(?i)(password=)[^&]*", r"\1***", parts.query)
    if parts.password is None:
        return url if query == parts.query else urlunsplit(parts._replace(query=query))
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}", query=query))
