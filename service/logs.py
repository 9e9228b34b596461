"""Logging set-up: one line per record, `key=value` fields after the message, the run id on each.

The run id travels in a context variable: set once when a run is admitted, it is inherited by the
run's tasks and, through `AsyncPipeline`'s copied context, by its worker thread, so every line
logged on the run's behalf carries it without being passed around.

Third-party loggers are held at WARNING whatever the service's level is: at debug the OpenAI
SDK prints request options (the user's question), and at info Haystack and httpx print a line per
component and request that says nothing the service's own `run ended` line does not. Logs must
never hold a key, and should not hold what users asked.
"""

import logging
from contextvars import ContextVar
from typing import Any

current_run_id: ContextVar[str | None] = ContextVar("current_run_id", default=None)

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "color_message"}
QUIET_LOGGERS = ("openai", "httpx", "httpcore", "haystack", "posthog")


class RunIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "run_id"):
            run_id = current_run_id.get()
            if run_id is not None:
                record.run_id = run_id
        return True


class KeyValueFormatter(logging.Formatter):
    """`time level logger message key=value ...` with the record's extra fields appended."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        if extras:
            line += " " + " ".join(f"{key}={_value(value)}" for key, value in extras.items())
        return line


def _value(value: Any) -> str:
    text = str(value)
    return f'"{text}"' if " " in text or not text else text


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(KeyValueFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.addFilter(RunIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
