"""Structured logging: JSON lines in production, readable lines in development.

Log records carry ids, routes, statuses and error class names; never request bodies, claim
values or exception messages, which may hold personal data. Every record logged while a request
is being served carries that request's `request_id`, whoever logs it (our code, SQLAlchemy,
uvicorn), so that one request's lines can be found together; and, when the caller sent its own
X-Request-ID, that value as `correlation_id`, a separate field: the caller chose it, so it may
be anything sane, even another organisation's request id, and is never taken for ours.
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
# (request_id, correlation_id): ours, and the caller's own label if it sent one.
_REQUEST: ContextVar[tuple[str, str | None] | None] = ContextVar("request", default=None)


def bind_request_id(
    request_id: str, correlation_id: str | None = None
) -> Token[tuple[str, str | None] | None]:
    return _REQUEST.set((request_id, correlation_id))


def unbind_request_id(token: Token[tuple[str, str | None] | None]) -> None:
    _REQUEST.reset(token)


def current_request_id() -> str | None:
    bound = _REQUEST.get()
    return bound[0] if bound else None


class RequestIdFilter(logging.Filter):
    """Adds the current request's id (and the caller's correlation id, if any) to each record
    that does not already carry them; a record logged outside any request gets neither."""

    def filter(self, record: logging.LogRecord) -> bool:
        bound = _REQUEST.get()
        if bound is None:
            return True
        request_id, correlation_id = bound
        if not hasattr(record, "request_id"):
            record.request_id = request_id
        if correlation_id is not None and not hasattr(record, "correlation_id"):
            record.correlation_id = correlation_id
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
