"""Domain errors, and the typed `error` events a failed run ends with.

Messages here are written by us, never copied from the upstream: an upstream's error text can
quote the caller's key (OpenAI's 401 does, partly masked; others in full) or the prompt.
"""

import json
from dataclasses import dataclass
from enum import StrEnum

import httpx
import openai


class ErrorType(StrEnum):
    UPSTREAM_AUTH = "upstream_auth"
    UPSTREAM_REJECTED = "upstream_rejected"
    RATE_LIMITED = "rate_limited"
    UPSTREAM_UNAVAILABLE = "upstream_unavailable"
    UPSTREAM_MALFORMED = "upstream_malformed"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    SHUTTING_DOWN = "shutting_down"
    RUN_TIMEOUT = "run_timeout"
    INTERNAL = "internal"


@dataclass(frozen=True)
class RunError:
    """What a client learns about a failed run: safe to send and to log."""

    type: ErrorType
    message: str
    retryable: bool
    status: int | None = None  # the upstream's HTTP status, when it answered with one
    retry_after: float | None = None


class CapacityExceeded(Exception):
    """Every stream slot is taken (or the held-runs store is full of running runs)."""


class ShuttingDown(Exception):
    """The service is stopping: no new run is admitted, and one still streaming after the grace is ended."""


class RunNotFound(Exception):
    """No run has this id, or it is no longer held."""


class ConversationNotFound(Exception):
    """No conversation has this id: never had, deleted, or evicted (the same answer for each)."""


class RunExpired(Exception):
    """A `Last-Event-ID` names a run that is no longer held (or is not the caller's)."""


class ReplayUnavailable(Exception):
    """The run is held, but no longer holds the events after the id the client has."""


class StoreUnavailable(Exception):
    """The shared store (HAYSTREAM_STORE_URL) cannot be reached: no new run, and a run writing to it ends."""


class RunTooLong(Exception):
    """The run went past HAYSTREAM_RUN_MAX_DURATION and was ended."""


class UpstreamIncomplete(Exception):
    """The upstream's stream ended cleanly but without a finish reason: the answer was cut short."""


class RunCancelled(Exception):
    """Raised in the worker thread to stop a generation nobody is reading any more."""


class UpstreamCancelled(RunCancelled, openai.OpenAIError):
    """A cancelled run's request that was not sent. An `OpenAIError`, so the SDK neither retries it
    (it retries connection errors and timeouts, sending again) nor waits before giving up."""


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None


def _from_status(error: openai.APIStatusError) -> RunError:
    status = error.status_code
    if status in (401, 403):
        return RunError(ErrorType.UPSTREAM_AUTH, f"The upstream refused the API key ({status}).", False, status)
    if status == 429:
        retry_after = _retry_after(error.response)
        return RunError(ErrorType.RATE_LIMITED, "The upstream is rate limiting.", True, status, retry_after)
    if status in (408, 504):
        return RunError(ErrorType.UPSTREAM_TIMEOUT, f"The upstream timed out ({status}).", True, status)
    if status >= 500:
        return RunError(ErrorType.UPSTREAM_UNAVAILABLE, f"The upstream failed ({status}).", True, status)
    detail = "unknown model" if status == 404 else "request rejected"
    return RunError(
        ErrorType.UPSTREAM_REJECTED, f"The upstream rejected the request: {detail} ({status}).", False, status
    )


def classify(error: BaseException) -> RunError:
    """Map whatever ended a run to the error a client sees, looking through wrapper exceptions."""
    # The innermost cause is the most specific: a PipelineRuntimeError wraps the SDK's error.
    for cause in reversed(chain(error)):
        if isinstance(cause, ShuttingDown):
            return RunError(ErrorType.SHUTTING_DOWN, "The service is restarting; send the request again.", True)
        if isinstance(cause, RunTooLong):
            return RunError(ErrorType.RUN_TIMEOUT, "The run went on longer than the service allows.", False)
        if isinstance(cause, UpstreamIncomplete):
            message = "The upstream ended the stream before the answer was complete."
            return RunError(ErrorType.UPSTREAM_UNAVAILABLE, message, True)
        if isinstance(cause, openai.APIStatusError):
            return _from_status(cause)
        if isinstance(cause, openai.APITimeoutError | httpx.TimeoutException):
            return RunError(ErrorType.UPSTREAM_TIMEOUT, "The upstream did not answer in time.", True)
        if isinstance(cause, openai.APIConnectionError | httpx.TransportError):
            return RunError(ErrorType.UPSTREAM_UNAVAILABLE, "The upstream could not be reached or hung up.", True)
        if isinstance(cause, openai.APIError | json.JSONDecodeError):
            # openai.APIError here: a stream that carried an error object or failed validation.
            return RunError(ErrorType.UPSTREAM_MALFORMED, "The upstream sent a response we could not read.", True)
    return RunError(ErrorType.INTERNAL, "The service failed while streaming the answer.", False)


def chain(error: BaseException) -> list[BaseException]:
    """`error` and what it wraps (its cause, or the exception being handled when it was raised), outermost first."""
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


class InvalidRequest(Exception):
    """A request the service refuses before streaming; `field` names what was wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
