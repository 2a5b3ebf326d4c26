"""Structured logs with a correlation id.

Every record carries ``correlation_id`` (the request's ``X-Request-ID`` or the job id) from a context
variable. Log *what happened* with ids, counts, sizes and types; never document text, names or
identifiers, and never an exception's message (it may quote patient data): ``log_exception`` records
the type and the stack frames only.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import traceback
from datetime import UTC, datetime

from pythonjsonlogger.json import JsonFormatter

from ai_med_extract.config import LogSettings

correlation_id: contextvars.ContextVar[str] = contextvars.ContextVar("correlation_id", default="-")


class _CorrelationFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = correlation_id.get()
        return True


def iso_utc(record: logging.LogRecord) -> str:
    """The record's time in ISO 8601, UTC, to the millisecond: ``2026-01-31T09:15:02.345Z``."""
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class UtcJsonFormatter(JsonFormatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return iso_utc(record)


class ExceptionTextFilter(logging.Filter):
    """Keeps exception messages out of every record that reaches the handler, whoever logged it.

    uvicorn ("Exception in ASGI application"), Starlette and libraries log with ``exc_info``, whose
    message may quote patient data or SQL parameters. The record keeps the exception's type and its
    stack frames (``error_type``, ``frames``); the message, the chained causes' messages and any
    exception passed as a ``%s`` argument are dropped.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            record.error_type = type(exc).__name__
            record.frames = ("".join(traceback.format_tb(exc.__traceback__)) if exc.__traceback__ else "")[-4000:]
        record.exc_info = None
        record.exc_text = None
        record.stack_info = None
        if isinstance(record.args, tuple) and any(isinstance(a, BaseException) for a in record.args):
            record.args = tuple(f"<{type(a).__name__}>" if isinstance(a, BaseException) else a for a in record.args)
        elif isinstance(record.msg, BaseException):
            record.msg = f"<{type(record.msg).__name__}>"
        return True


class _TextFormatter(logging.Formatter):
    """Plain text for humans; an exception shows as its type (the filter removed its text)."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return iso_utc(record)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        error_type = getattr(record, "error_type", None)
        return f"{line} error_type={error_type}" if error_type else line


def configure_logging(settings: LogSettings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_CorrelationFilter())
    handler.addFilter(ExceptionTextFilter())
    if settings.json_format:
        handler.setFormatter(
            UtcJsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s %(correlation_id)s",
                rename_fields={"asctime": "timestamp", "levelname": "level", "name": "logger"},
                timestamp=False,
            )
        )
    else:
        handler.setFormatter(
            _TextFormatter("%(asctime)s %(levelname)-7s %(name)s [%(correlation_id)s] %(message)s")
        )
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "_ame", False):
            root.removeHandler(existing)
    handler._ame = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(settings.level)
    # uvicorn's and Starlette's loggers go through the root handler (and so through the filter);
    # handlers of their own (a log_config) would bypass it.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi", "starlette", "fastapi"):
        logger = logging.getLogger(name)
        for existing in list(logger.handlers):
            logger.removeHandler(existing)
        logger.propagate = True
    # Third-party loggers that would echo request lines or payloads.
    for noisy in ("uvicorn.access", "httpx", "httpcore", "multipart", "python_multipart"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def log_exception(logger: logging.Logger, message: str, exc: BaseException, **fields: object) -> None:
    """Log an unexpected exception without its message text (which may contain patient data)."""
    frames = "".join(traceback.format_tb(exc.__traceback__)) if exc.__traceback__ else ""
    logger.error(message, extra={"error_type": type(exc).__name__, "frames": frames[-4000:], **fields})
