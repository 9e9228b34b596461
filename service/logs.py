"""Logging set-up: one line per record, with the run id and any other fields a record carries.

Third-party loggers that would print request payloads at debug level (the OpenAI SDK dumps
request options, which include the user's question) are held at INFO whatever the service's
level is: logs must never hold a key, and should not hold what users asked.
"""

import logging
import logging.config
from typing import Any

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
_QUIET = ("openai", "httpx", "httpcore", "haystack", "posthog")


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
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in _QUIET:
        logging.getLogger(name).setLevel(max(logging.INFO, root.level))
