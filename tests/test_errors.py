"""Upstream failures map to typed errors whose messages are ours, never the upstream's."""

import json

import httpx
import openai
import pytest
from haystack.core.errors import PipelineRuntimeError

from service.errors import ErrorType, classify


def _status_error(status: int, headers: dict[str, str] | None = None) -> openai.APIStatusError:
    request = httpx.Request("POST", "http://upstream/v1/chat/completions")
    response = httpx.Response(status, headers=headers, request=request, json={"error": {"message": "sk-SECRET"}})
    return openai.OpenAI(api_key="k", base_url="http://upstream/v1")._make_status_error_from_response(response)


@pytest.mark.parametrize(
    ("status", "expected", "retryable"),
    [
        (401, ErrorType.UPSTREAM_AUTH, False),
        (403, ErrorType.UPSTREAM_AUTH, False),
        (404, ErrorType.UPSTREAM_REJECTED, False),
        (400, ErrorType.UPSTREAM_REJECTED, False),
        (429, ErrorType.RATE_LIMITED, True),
        (500, ErrorType.UPSTREAM_UNAVAILABLE, True),
        (503, ErrorType.UPSTREAM_UNAVAILABLE, True),
        (504, ErrorType.UPSTREAM_TIMEOUT, True),
    ],
)
def test_status_codes(status: int, expected: ErrorType, retryable: bool) -> None:
    error = classify(_status_error(status))
    assert (error.type, error.retryable, error.status) == (expected, retryable, status)
    assert "SECRET" not in error.message


def test_rate_limit_carries_retry_after() -> None:
    assert classify(_status_error(429, {"retry-after": "7"})).retry_after == 7.0


def test_wrapped_in_pipeline_error_is_unwrapped() -> None:
    cause = _status_error(401)
    wrapped = PipelineRuntimeError.from_exception("llm", object, cause)
    wrapped.__cause__ = cause
    assert classify(wrapped).type is ErrorType.UPSTREAM_AUTH


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (httpx.ReadTimeout("slow"), ErrorType.UPSTREAM_TIMEOUT),
        (openai.APITimeoutError(httpx.Request("POST", "http://u")), ErrorType.UPSTREAM_TIMEOUT),
        (httpx.RemoteProtocolError("peer closed"), ErrorType.UPSTREAM_UNAVAILABLE),
        (
            openai.APIConnectionError(request=httpx.Request("POST", "http://u")),
            ErrorType.UPSTREAM_UNAVAILABLE,
        ),
        (json.JSONDecodeError("bad", "{x", 1), ErrorType.UPSTREAM_MALFORMED),
        (RuntimeError("bug"), ErrorType.INTERNAL),
        (ValueError("bug"), ErrorType.INTERNAL),
    ],
)
def test_transport_and_internal_errors(error: BaseException, expected: ErrorType) -> None:
    assert classify(error).type is expected
