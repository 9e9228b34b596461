"""Domain errors (`service/errors.py`) and the framework's own refusals, mapped to HTTP once.

Every refusal before a stream is an `ErrorBody` (`{"type", "message", "retryable", "errors"?}`);
`errors` names the fields at fault when a request is malformed.
"""

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from service.errors import (
    CapacityExceeded,
    ConversationNotFound,
    InvalidRequest,
    ReplayUnavailable,
    RunExpired,
    RunNotFound,
    ShuttingDown,
    StoreUnavailable,
)
from service.http.responses import error_response
from service.serving import Serving

Handler = Callable[[Request, Any], Coroutine[Any, Any, JSONResponse]]


def add_error_handlers(app: FastAPI) -> None:
    handlers: dict[type[Exception], Handler] = {
        RequestValidationError: _invalid_body,
        InvalidRequest: _invalid_request,
        HTTPException: _http_error,
        CapacityExceeded: _at_capacity,
        ShuttingDown: _shutting_down,
        RunNotFound: _not_found,
        ConversationNotFound: _no_conversation,
        RunExpired: _run_expired,
        ReplayUnavailable: _replay_unavailable,
        StoreUnavailable: _store_unavailable,
    }
    for kind, handler in handlers.items():
        app.add_exception_handler(kind, handler)


def _retry_after(request: Request) -> dict[str, str]:
    serving: Serving = request.app.state.serving
    return {"Retry-After": str(serving.settings.retry_after)}


async def _at_capacity(request: Request, _: CapacityExceeded) -> JSONResponse:
    message = "Every stream slot is taken; retry shortly."
    return error_response(503, "at_capacity", message, retryable=True, headers=_retry_after(request))


async def _shutting_down(request: Request, _: ShuttingDown) -> JSONResponse:
    """Closes the connection too: the retry should reach another instance."""
    message = "The service is shutting down; retry shortly."
    headers = _retry_after(request) | {"Connection": "close"}
    return error_response(503, "shutting_down", message, retryable=True, headers=headers)


async def _store_unavailable(request: Request, _: StoreUnavailable) -> JSONResponse:
    message = "The service cannot reach its shared store; retry shortly."
    return error_response(503, "store_unavailable", message, retryable=True, headers=_retry_after(request))


async def _not_found(_: Request, __: RunNotFound) -> JSONResponse:
    return error_response(404, "run_not_found", "No such run, or it is no longer held.")


async def _no_conversation(_: Request, __: ConversationNotFound) -> JSONResponse:
    return error_response(404, "not_found", "No such conversation (it may have been deleted or evicted).")


async def _run_expired(_: Request, __: RunExpired) -> JSONResponse:
    message = "The run this Last-Event-ID belongs to is no longer held; start a new one."
    return error_response(410, "run_expired", message)


async def _replay_unavailable(_: Request, __: ReplayUnavailable) -> JSONResponse:
    message = "The events after Last-Event-ID are no longer held; start a new run."
    return error_response(410, "replay_unavailable", message)


async def _http_error(_: Request, error: HTTPException) -> JSONResponse:
    """Starlette's and FastAPI's own HTTP errors, in the service's error shape."""
    if error.status_code == 400:  # FastAPI could not parse the body (e.g. not UTF-8)
        message = "body: could not be parsed as UTF-8 JSON"
        return error_response(
            400, "invalid_json", message, errors=[{"field": "body", "message": "could not be parsed"}]
        )
    return error_response(error.status_code, "http_error", str(error.detail), headers=error.headers)


async def _invalid_request(_: Request, error: InvalidRequest) -> JSONResponse:
    return error_response(422, "invalid_request", str(error), errors=[{"field": error.field, "message": error.message}])


async def _invalid_body(request: Request, error: RequestValidationError) -> JSONResponse:
    """FastAPI's 422, minus the echoed input (it may be a key), with fields named plainly."""
    if request.method == "POST" and not _is_json(request.headers.get("content-type", "")):
        field = {"field": "content-type", "message": "must be application/json"}
        return error_response(415, "unsupported_media_type", "content-type: must be application/json", errors=[field])
    fields = [_field_error(detail) for detail in error.errors()]
    if any(detail.get("type") == "json_invalid" for detail in error.errors()):
        return error_response(
            400, "invalid_json", "body: not valid JSON", errors=[{"field": "body", "message": "not valid JSON"}]
        )
    message = "; ".join(f"{item['field']}: {item['message']}" for item in fields)
    return error_response(422, "invalid_request", message, errors=fields)


def _is_json(content_type: str) -> bool:
    """FastAPI's own (strict) rule for reading a body as JSON: application/json or application/*+json."""
    kind = content_type.split(";")[0].strip().lower()
    return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))


def _field_error(detail: dict[str, object]) -> dict[str, str]:
    loc = [str(part) for part in detail.get("loc", ()) if part not in ("body", "header")]  # type: ignore[attr-defined]
    message = str(detail.get("msg", "invalid"))
    if detail.get("type") == "extra_forbidden":
        message = "is not a known field"
    return {"field": ".".join(loc) or "body", "message": message.removeprefix("Value error, ")}
