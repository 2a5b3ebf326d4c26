"""Audit rows for refused requests: every failed authentication (401), and rate-limited requests
(429) sampled so that an attack cannot flood the trail.

For 429s, per client and limit, the 1st, 2nd, 4th, 8th ... refusal of each minute is written (with
the count so far), and no more than ``max_rows_per_minute`` such rows in all; the next row written
says how many were left out. Memory is bounded: at most ``max_clients`` clients are tracked.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Any

from starlette.requests import Request

from ai_med_extract.audit.trail import AuditEntry
from ai_med_extract.errors import AppError, TooManyRequests, Unauthorized
from ai_med_extract.observability.logs import log_exception

logger = logging.getLogger(__name__)


class RefusalSampler:
    def __init__(self, *, max_rows_per_minute: int = 120, max_clients: int = 10_000, clock: Any = time.monotonic):
        self.max_rows_per_minute = max_rows_per_minute
        self.max_clients = max_clients
        self.clock = clock
        self._clients: OrderedDict[tuple[str, str], tuple[int, int]] = OrderedDict()
        self._minute = -1
        self._rows = 0
        self._suppressed = 0

    def decide(self, client: str, scope: str) -> dict[str, Any] | None:
        """The request_data of a row to write for this refusal, or None to only count it."""
        minute = int(self.clock() // 60)
        if minute != self._minute:
            self._minute, self._rows = minute, 0
        key = (client, scope)
        window, count = self._clients.pop(key, (minute, 0))
        if window != minute:
            window, count = minute, 0
        count += 1
        self._clients[key] = (window, count)
        while len(self._clients) > self.max_clients:
            self._clients.popitem(last=False)
        if count & (count - 1) or self._rows >= self.max_rows_per_minute:
            self._suppressed += 1
            return None
        self._rows += 1
        data: dict[str, Any] = {"scope": scope, "refused_this_minute": count}
        if self._suppressed:
            data["not_logged_before"] = self._suppressed
            self._suppressed = 0
        return data


def _path(request: Request) -> str:
    return request.url.path[:128]


async def record_refusal(request: Request, services: Any, exc: AppError) -> None:
    """Write the audit row of a 401 or (sampled) 429, in a short transaction of its own."""
    from ai_med_extract.api.deps import client_ip

    if getattr(request.state, "refusal_audited", False):
        return
    request.state.refusal_audited = True
    ip = client_ip(request)
    data: dict[str, Any] | None
    if isinstance(exc, TooManyRequests):
        sampler: RefusalSampler = request.app.state.refusals
        data = sampler.decide(ip or "unknown", str((exc.details or {}).get("scope", "")))
        if data is None:
            return
        action = "request.rate_limited"
    elif isinstance(exc, Unauthorized):
        data = {}
        action = "auth.failed"
    else:
        return
    data.update(method=request.method, path=_path(request))
    try:
        async with services.sessionmaker() as session, session.begin():
            await services.audit.append(
                session,
                AuditEntry(
                    action=action,
                    resource_type="request",
                    phi_accessed=False,
                    ip_address=ip,
                    user_agent=request.headers.get("user-agent"),
                    request_data=data,
                    response_status=exc.status_code,
                    error_message=exc.code,
                ),
            )
    except Exception as error:
        log_exception(logger, "could not write the audit row of a refused request", error)
