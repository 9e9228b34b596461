"""Domain errors (`service/errors.py`) and the framework's own refusals, mapped to HTTP once.

Every refusal before a stream is an `ErrorBody` (`{"type", "message", "retryable", "errors"}`), the
framework's own included (an unknown path is a 404 `not_found`, a method the path does not take a
405 `method_not_allowed`, with `Allow`); `errors` names what in the request was at fault: a field,
a header, the body, the path, the method. It is empty when nothing in the request was (a 503).
An empty body is not valid JSON: a 400 `invalid_json`, as a body that does not parse is.

On OpenAI's paths (`/v1/...`) the same refusal is OpenAI's error body (`{"error": {"message",
"type", "param", "code"}}`, `code` being the service's type and `param` the first field at fault),
and a malformed request is a 400 as OpenAI answers it, not a 422, so OpenAI's SDKs raise the class
they would for OpenAI itself (`BadRequestError`, `AuthenticationError`, ...).
"""

from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from service.errors import (
    CapacityExceeded,
    ConversationNotFound,
    InvalidRequest,
    Refusal,
    ReplayUnavailable,
    RunExpired,
    RunNotFound,
    ShuttingDown,
    StoreUnavailable,
    Unauthenticated,
    UnknownModel,
)
from service.http.responses import error_response
from service.serving import Serving
from service.streaming.openai_chunks import error_object

OPENAI_PATHS = "/v1/"

Handler = Callable[[Request, Any], Coroutine[Any, Any, JSONResponse]]

AT_CAPACITY = {
    Refusal.SLOTS: "Every stream slot is taken; retry shortly.",
    Refusal.LOOP_LAG: "The service is too busy to start another stream now; retry shortly.",
}


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
        UnknownModel: _unknown_model,
        Unauthenticated: _unauthenticated,
        StoreUnavailable: _store_unavailable,
    }
    for kind, handler in handlers.items():
        app.add_exception_handler(kind, handler)


def _retry_after(request: Request) -> dict[str, str]:
    serving: Serving = request.app.state.serving
    return {"Retry-After": str(serving.settings.retry_after)}


async def _at_capacity(request: Request, error: CapacityExceeded) -> JSONResponse:
    message = AT_CAPACITY[error.reason]
    return refusal(request.url.path, 503, "at_capacity", message, retryable=True, headers=_retry_after(request))


def at_capacity(error: CapacityExceeded, retry_after: int, path: str) -> JSONResponse:
    """The 503 for a new stream the `ShedLoad` middleware refuses, before any routing, in `path`'s API's shape."""
    headers = {"Retry-After": str(retry_after)}
    return refusal(path, 503, "at_capacity", AT_CAPACITY[error.reason], retryable=True, headers=headers)


async def _shutting_down(request: Request, _: ShuttingDown) -> JSONResponse:
    """Closes the connection too: the retry should reach another instance."""
    message = "The service is shutting down; retry shortly."
    headers = _retry_after(request) | {"Connection": "close"}
    return refusal(request.url.path, 503, "shutting_down", message, retryable=True, headers=headers)


async def _store_unavailable(request: Request, _: StoreUnavailable) -> JSONResponse:
    message = "The service cannot reach its shared store; retry shortly."
    return refusal(request.url.path, 503, "store_unavailable", message, retryable=True, headers=_retry_after(request))


async def _not_found(request: Request, __: RunNotFound) -> JSONResponse:
    errors = [{"field": "run_id", "message": "no such run, or it is no longer held"}]
    return refusal(request.url.path, 404, "run_not_found", "No such run, or it is no longer held.", errors=errors)


async def _no_conversation(request: Request, __: ConversationNotFound) -> JSONResponse:
    message = "No such conversation (it may have been deleted or evicted)."
    errors = [{"field": "conversation_id", "message": "no such conversation"}]
    return refusal(request.url.path, 404, "not_found", message, errors=errors)


async def _unknown_model(request: Request, error: UnknownModel) -> JSONResponse:
    message = "No such model; GET /v1/models lists the models."  # not echoed: a misplaced key must not come back
    return refusal(request.url.path, 404, "model_not_found", message, errors=[{"field": "model", "message": "unknown"}])


async def _unauthenticated(request: Request, error: Unauthenticated) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"}
    return refusal(request.url.path, 401, "invalid_api_key", str(error), headers=headers)


async def _run_expired(request: Request, __: RunExpired) -> JSONResponse:
    message = "The run this Last-Event-ID belongs to is no longer held; start a new one."
    errors = [{"field": "last-event-id", "message": "names a run that is no longer held"}]
    return refusal(request.url.path, 410, "run_expired", message, errors=errors)


async def _replay_unavailable(request: Request, __: ReplayUnavailable) -> JSONResponse:
    message = "The events after Last-Event-ID are no longer held; start a new run."
    errors = [{"field": "last-event-id", "message": "the events after it are no longer held"}]
    return refusal(request.url.path, 410, "replay_unavailable", message, errors=errors)


async def _http_error(request: Request, error: HTTPException) -> JSONResponse:
    """Starlette's and FastAPI's own HTTP errors, in the service's error shape."""
    status, headers = error.status_code, error.headers
    if status == 400:  # FastAPI could not parse the body (e.g. not UTF-8)
        message = "body: could not be parsed as UTF-8 JSON"
        fields = [{"field": "body", "message": "could not be parsed"}]
        return refusal(request.url.path, 400, "invalid_json", message, errors=fields)
    if status == 404:  # no route has this path (or a route found nothing there: a static file)
        return refusal(
            request.url.path, 404, "not_found", "No such path.", errors=[{"field": "path", "message": "no such path"}]
        )
    if status == 405:
        allowed = next((value for name, value in (headers or {}).items() if name.lower() == "allow"), "")
        message = f"{request.method} is not allowed here; use {allowed.replace(', ', ' or ')}."
        errors = [{"field": "method", "message": f"must be one of: {allowed}"}]
        return refusal(request.url.path, 405, "method_not_allowed", message, errors=errors, headers=headers)
    return refusal(request.url.path, status, "http_error", str(error.detail), headers=headers)


async def _invalid_request(request: Request, error: InvalidRequest) -> JSONResponse:
    fields = [{"field": error.field, "message": error.message}]
    return refusal(request.url.path, 422, "invalid_request", str(error), errors=fields)


async def _invalid_body(request: Request, error: RequestValidationError) -> JSONResponse:
    """FastAPI's 422, minus the echoed input (it may be a key), with fields named plainly."""
    if request.method == "POST" and not _is_json(request.headers.get("content-type", "")):
        field = {"field": "content-type", "message": "must be application/json"}
        message = "content-type: must be application/json"
        return refusal(request.url.path, 415, "unsupported_media_type", message, errors=[field])
    fields = [_field_error(detail) for detail in error.errors()]
    if any(detail.get("type") == "json_invalid" for detail in error.errors()):
        invalid = [{"field": "body", "message": "not valid JSON"}]
        return refusal(request.url.path, 400, "invalid_json", "body: not valid JSON", errors=invalid)
    if any(_is_whole_body(detail, "missing") for detail in error.errors()):  # nothing was sent
        field = {"field": "body", "message": "is empty: send a JSON object"}
        return refusal(request.url.path, 400, "invalid_json", "body: is empty: send a JSON object", errors=[field])
    message = "; ".join(f"{item['field']}: {item['message']}" for item in fields)
    return refusal(request.url.path, 422, "invalid_request", message, errors=fields)


def refusal(
    path: str,
    status: int,
    error_type: str,
    message: str,
    *,
    retryable: bool = False,
    errors: list[dict[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The refusal in the shape of the path's API: the service's `ErrorBody`, or OpenAI's on /v1."""
    if not path.startswith(OPENAI_PATHS):
        return error_response(status, error_type, message, retryable=retryable, errors=errors, headers=headers)
    if status == 422:
        status = 400  # OpenAI answers a malformed request with a 400
    param = errors[0]["field"] if errors else None
    body = error_object(message, openai_error_type(status), error_type, param)
    return JSONResponse(body, status, headers=headers)


def openai_error_type(status: int) -> str:
    """The `type` OpenAI gives an error of this status."""
    if status == 429:
        return "rate_limit_error"
    if status >= 500:
        return "server_error"
    if status in (401, 403):
        return "authentication_error" if status == 401 else "permission_error"
    return "invalid_request_error"


def _is_json(content_type: str) -> bool:
    """FastAPI's own (strict) rule for reading a body as JSON: application/json or application/*+json."""
    kind = content_type.split(";")[0].strip().lower()
    return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))


def _is_whole_body(detail: dict[str, Any], kind: str) -> bool:
    return tuple(detail.get("loc", ())) == ("body",) and detail.get("type") == kind


def _field_error(detail: dict[str, object]) -> dict[str, str]:
    loc = [str(part) for part in detail.get("loc", ()) if part not in ("body", "header")]  # type: ignore[attr-defined]
    message = str(detail.get("msg", "invalid"))
    if detail.get("type") == "extra_forbidden":
        message = "is not a known field"
    elif _is_whole_body(detail, "model_attributes_type"):  # valid JSON, but a list, a string, null...
        message = "must be a JSON object"
    return {"field": ".".join(loc) or "body", "message": message.removeprefix("Value error, ")}
