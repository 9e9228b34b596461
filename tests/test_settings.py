"""Settings: env prefix, OPENAI_BASE_URL, bounds, and combinations refused at start-up."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from pipelines import SAMPLE_DOCUMENTS
from service.settings import MaxTokensField, Settings


def test_defaults_talk_to_openai() -> None:
    settings = Settings()
    assert settings.base_url is None
    assert settings.keepalive_interval == 15
    assert settings.demo is False


def test_env_prefix_and_openai_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:11434/v1")
    monkeypatch.setenv("HAYSTREAM_MAX_STREAMS", "7")
    settings = Settings()
    assert settings.base_url == "http://localhost:11434/v1"
    assert settings.max_streams == 7


def test_the_service_setting_wins_over_openai_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://a/v1")
    monkeypatch.setenv("HAYSTREAM_BASE_URL", "http://b/v1")
    assert Settings().base_url == "http://b/v1"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_streams", 0),
        ("queue_size", 0),
        ("keepalive_interval", 0),
        ("keepalive_interval", 60),
        ("log_level", "loud"),
        ("shutdown_grace", -1),
        ("shutdown_grace", 301),
        ("max_tokens_field", "both"),
    ],
)
def test_out_of_bounds_values_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field):
        Settings.model_validate({field: value})


def test_generation_kwargs_follow_settings() -> None:
    assert Settings(include_usage=False).generation_kwargs() == {}
    assert Settings(temperature=0.2, max_completion_tokens=5).generation_kwargs() == {
        "stream_options": {"include_usage": True},
        "temperature": 0.2,
        "max_completion_tokens": 5,
    }
    assert Settings(max_completion_tokens=5, max_tokens_field=MaxTokensField.MAX_TOKENS).generation_kwargs() == {
        "stream_options": {"include_usage": True},
        "max_tokens": 5,
    }


def test_log_format_is_text_unless_json_is_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().log_format == "text"
    monkeypatch.setenv("HAYSTREAM_LOG_FORMAT", "json")
    assert Settings().log_format == "json"
    monkeypatch.setenv("HAYSTREAM_LOG_FORMAT", "yaml")
    with pytest.raises(ValidationError, match="log_format"):
        Settings()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('["https://app.example.com", "http://localhost:5173"]', ("https://app.example.com", "http://localhost:5173")),
        ("https://app.example.com, http://localhost:5173", ("https://app.example.com", "http://localhost:5173")),
        ("https://App.Example.com", ("https://app.example.com",)),
        ("http://[::1]:8080,", ("http://[::1]:8080",)),
        ("*", ("*",)),
        ("", ()),
    ],
)
def test_cors_origins_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: tuple[str, ...]
) -> None:
    monkeypatch.setenv("HAYSTREAM_CORS_ORIGINS", value)
    assert Settings().cors_origins == expected


def test_cors_is_off_and_the_shutdown_grace_is_bounded_by_default() -> None:
    settings = Settings()
    assert settings.cors_origins == () and settings.cors_allow_credentials is False
    assert settings.shutdown_grace == 20


@pytest.mark.parametrize(
    "value", ["https://app.example.com/", "https://app.example.com/chat", "null", "ftp://app.example.com", "[1,"]
)
def test_a_cors_entry_that_is_not_an_origin_is_refused(value: str) -> None:
    with pytest.raises(ValidationError, match="cors_origins"):
        Settings.model_validate({"cors_origins": value})


@pytest.mark.parametrize(("field", "value"), [("send_timeout", 0), ("send_timeout", 3601), ("max_body_bytes", 100)])
def test_failure_limits_are_bounded(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field):
        Settings.model_validate({field: value})


def test_failure_limits_have_safe_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (Settings().send_timeout, Settings().max_body_bytes) == (30, 64 * 1024)
    monkeypatch.setenv("HAYSTREAM_SEND_TIMEOUT", "5")
    monkeypatch.setenv("HAYSTREAM_MAX_BODY_BYTES", "40000")
    assert (Settings().send_timeout, Settings().max_body_bytes) == (5, 40_000)


def test_the_demo_from_the_environment_answers_from_the_sample_documents(monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: `-e HAYSTREAM_DEMO=true` (the container's form) left out the documents `--demo` sets."""
    monkeypatch.setenv("HAYSTREAM_DEMO", "true")
    assert Settings().documents_dir == SAMPLE_DOCUMENTS and SAMPLE_DOCUMENTS.is_dir()
    monkeypatch.setenv("HAYSTREAM_DOCUMENTS_DIR", "/srv/docs")
    assert Settings().documents_dir == Path("/srv/docs")  # a folder the operator names still wins
    monkeypatch.delenv("HAYSTREAM_DEMO")
    monkeypatch.delenv("HAYSTREAM_DOCUMENTS_DIR")
    assert Settings().documents_dir is None


def test_the_store_is_this_process_by_default() -> None:
    assert Settings().store_url == "memory://"


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/0", "rediss://:secret@redis.internal:6380/2", "unix:///run/redis.sock"]
)
def test_store_url_accepts_redis_urls(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("HAYSTREAM_STORE_URL", url)
    assert Settings().store_url == url


@pytest.mark.parametrize(
    "url", ["postgres://db/1", "redis:///0", "memory://somewhere", "127.0.0.1:6379", "unix://", "http://redis"]
)
def test_store_url_refuses_what_is_not_a_store(url: str) -> None:
    with pytest.raises(ValidationError, match="store_url"):
        Settings(store_url=url)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:hunter2@redis:6379/0", "redis://:***@redis:6379/0"),
        ("rediss://app:hunter2@redis.internal:6380/1", "rediss://app:***@redis.internal:6380/1"),
        ("redis://redis:6379/0?password=hunter2&db=1", "redis://redis:6379/0?password=***&db=1"),
        ("redis://redis:6379/0", "redis://redis:6379/0"),
        ("memory://", "memory://"),
    ],
)
def test_the_store_urls_password_is_never_shown(url: str, shown: str) -> None:
    settings = Settings(store_url=url)
    assert settings.redacted_store_url == shown
    assert "hunter2" not in settings.redacted_store_url
