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


class UtcTextFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return iso_utc(record)


def configure_logging(settings: LogSettings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_CorrelationFilter())
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
            UtcTextFormatter("%(asctime)s %(levelname)-7s %(name)s [%(correlation_id)s] %(message)s")
        )
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "_ame", False):
            root.removeHandler(existing)
    handler._ame = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(settings.level)
    # Third-party loggers that would echo request lines or payloads.
    for noisy in ("uvicorn.access", "httpx", "httpcore", "multipart", "python_multipart"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def log_exception(logger: logging.Logger, message: str, exc: BaseException, **fields: object) -> None:
    """Log an unexpected exception without its message text (which may contain patient data)."""
    frames = "".join(traceback.format_tb(exc.__traceback__)) if exc.__traceback__ else ""
    logger.error(message, extra={"error_type": type(exc).__name__, "frames": frames[-4000:], **fields})
