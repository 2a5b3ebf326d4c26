"""Server-sent events, the one way the API sends them: ``sse_response(events)`` and ``sse_event``.

Both streams (a job's events, ``GET /job/{id}/events``; a generation's tokens, ``POST
/api/generate_summary`` with ``stream``) send JSON data, a keep-alive ping every 15 s and give up on a
client that stops reading for 30 s. ``error_event`` reports a failure once the response has started:
a stable code, never the exception text.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from sse_starlette.sse import EventSourceResponse, ServerSentEvent

from ai_med_extract.errors import AppError

PING_S = 15
SEND_TIMEOUT_S = 30


def sse_event(event: str, data: Any, *, id: int | None = None) -> ServerSentEvent:
    return ServerSentEvent(data=json.dumps(data), event=event, id=None if id is None else str(id))


def error_event(exc: Exception, *, logger: logging.Logger, what: str) -> tuple[int, str, ServerSentEvent]:
    """The status and code an error ends a started stream with, and the ``error`` event to send."""
    if isinstance(exc, AppError):
        return exc.status_code, exc.code, sse_event("error", {"code": exc.code, "message": exc.message})
    logger.error(f"{what} failed", extra={"error_type": type(exc).__name__})
    return 500, "INTERNAL_ERROR", sse_event("error", {"code": "INTERNAL_ERROR", "message": f"{what} failed"})


def sse_response(events: AsyncIterator[ServerSentEvent]) -> EventSourceResponse:
    return EventSourceResponse(events, ping=PING_S, send_timeout=SEND_TIMEOUT_S)
