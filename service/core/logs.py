"""Structured logging: JSON lines in production, readable lines in development.

Log records carry ids, routes, statuses and error class names; never request bodies, claim
values or exception messages, which may hold personal data. Every record logged while a request
is being served carries that request's `request_id`, whoever logs it (our code, SQLAlchemy,
uvicorn), so that one request's lines can be found together.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any

from service.core.settings import LogFormat, Settings

# Attributes every LogRecord has; anything else was passed in `extra=` and is ours to print.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "color_message",  # uvicorn passes an ANSI-coloured copy of its message
}


# Set by the request middleware for the length of one request. Each request an ASGI server
# serves runs in a task of its own, with a copy of the context, so one cannot see another's.
_REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)


def bind_request_id(request_id: str) -> Token[str | None]:
    return _REQUEST_ID.set(request_id)


def unbind_request_id(token: Token[str | None]) -> None:
    _REQUEST_ID.reset(token)


def current_request_id() -> str | None:
    return _REQUEST_ID.get()


class RequestIdFilter(logging.Filter):
    """Adds the current request's id to each record that does not already carry one; a record
    logged outside any request gets no `request_id` at all."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            request_id = _REQUEST_ID.get()
            if request_id is not None:
                record.request_id = request_id
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        return json.dumps(entry, default=str)


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{k}={v}" for k, v in vars(record).items() if k not in _STANDARD)
        stamp = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        return (
            f"{stamp} {record.levelname:<7} {record.name}: {record.getMessage()} {extras}".rstrip()
        )


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stdout)
    # On the handler, not a logger: logger filters do not see records propagated from
    # other loggers (uvicorn's, SQLAlchemy's), handler filters see every record printed.
    handler.addFilter(RequestIdFilter())
    json_logs = settings.effective_log_format is LogFormat.json
    handler.setFormatter(JsonFormatter() if json_logs else ConsoleFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    # uvicorn's own error logger would print tracebacks with exception messages.
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True
