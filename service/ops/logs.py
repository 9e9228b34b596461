"""Logging set-up: one line per record, as `key=value` text for people or JSON lines for shippers.

The run id travels in a context variable: set once when a run is admitted, it is inherited by the
run's tasks and, through `AsyncPipeline`'s copied context, by its worker thread, so every line
logged on the run's behalf carries it without being passed around. That includes uvicorn's access
line for `POST /chat`: uvicorn writes it when the response starts, from the task that streams the
response, which runs in the request's context.

Every record says which process wrote it (`worker`: its pid), so the lines of `--workers N` or of
several replicas sharing one log can be told apart, including uvicorn's access lines: which worker
served which request.

Third-party loggers are held at WARNING whatever the service's level is: at debug the OpenAI
SDK prints request options (the user's question), and at info Haystack and httpx print a line per
component and request that says nothing the service's own `run ended` line does not. Logs must
never hold a key, and should not hold what users asked: a failed run is logged by its error type
and exception class, never by the exception's message, and the access line drops query strings.
"""

import json
import logging
import traceback
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from service.errors import ErrorType, chain, classify

LogFormat = Literal["text", "json"]

current_run_id: ContextVar[str | None] = ContextVar("current_run_id", default=None)

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "color_message"}
QUIET_LOGGERS = ("openai", "httpx", "httpcore", "haystack", "posthog")
ACCESS_LOGGER = "uvicorn.access"


class RunIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "run_id"):
            run_id = current_run_id.get()
            if run_id is not None:
                record.run_id = run_id
        return True


class WorkerFilter(logging.Filter):
    """`worker`: the pid of the process that made the record (uvicorn's workers are processes)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = record.process
        return True


class AccessLogFilter(logging.Filter):
    """uvicorn's access line without the query string: a key pasted into a URL must not be logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = _access_args(record)
        if args is not None:
            client, method, path, version, status = args
            record.args = (client, method, str(path).partition("?")[0], version, status)
        return True


def _access_args(record: logging.LogRecord) -> tuple[Any, ...] | None:
    if record.name == ACCESS_LOGGER and isinstance(record.args, tuple) and len(record.args) == 5:
        return record.args
    return None


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


class KeyValueFormatter(logging.Formatter):
    """`time level logger message key=value ...` with the record's extra fields appended."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = _extras(record)
        if extras:
            line += " " + " ".join(f"{key}={_value(value)}" for key, value in extras.items())
        return line


def _value(value: Any) -> str:
    text = str(value)
    return f'"{text}"' if " " in text or not text else text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: `time` (UTC), `level`, `logger`, `message`, then the extra fields.

    uvicorn's access line also gets `client`, `method`, `path` and `status` as fields.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        access = _access_args(record)
        if access is not None:
            entry.update(zip(("client", "method", "path", "http_version", "status"), access, strict=True))
        entry.update(_extras(record))
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def failure_fields(error: BaseException) -> dict[str, Any]:
    """What a log line may say about a failed run: its error type and exception classes, not their text.

    An upstream's error message can quote the key, and an exception's message can quote the prompt.
    `error_chain` names the exception classes from the outermost wrapper to the first cause; for an
    `internal` error (a bug here), `error_at` is the innermost frame of the first cause.
    """
    run_error = classify(error)
    causes = chain(error)
    fields: dict[str, Any] = {"error_type": str(run_error.type), "error_chain": ">".join(map(_class_name, causes))}
    if run_error.status is not None:
        fields["upstream_status"] = run_error.status
    cause = causes[-1]
    if run_error.type is ErrorType.INTERNAL and cause.__traceback__ is not None:
        frame = traceback.extract_tb(cause.__traceback__)[-1]
        fields["error_at"] = f"{frame.filename}:{frame.lineno}"
    return fields


def log_handler(log_format: LogFormat = "text", stream: TextIO | None = None) -> logging.Handler:
    """The service's handler: to `stream` (default stderr), run ids and the worker added, query strings dropped."""
    handler = logging.StreamHandler(stream)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(KeyValueFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.addFilter(RunIdFilter())
    handler.addFilter(WorkerFilter())
    handler.addFilter(AccessLogFilter())
    return handler


def configure_logging(level: str, log_format: LogFormat = "text") -> None:
    root = logging.getLogger()
    root.handlers[:] = [log_handler(log_format)]
    root.setLevel(level.upper())
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))


def _class_name(error: BaseException) -> str:
    cls = type(error)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
