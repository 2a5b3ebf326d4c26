"""Authentication before the body: a request that carries a body is authenticated (and rate limited)
from its headers alone, and refused before a byte of the body is read.

FastAPI parses a route's body (a multipart upload is spooled to a temporary file) before it runs the
route's dependencies, so without this gate an anonymous client could make the service receive and
store up to the body cap before hearing 401. The principal found here is reused by ``authenticate``.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from ai_med_extract.api.deps import resolve_principal
from ai_med_extract.api.errors import envelope
from ai_med_extract.errors import AppError, TooManyRequests

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _has_body(scope: Scope) -> bool:
    if scope["method"] not in _BODY_METHODS:
        return False
    headers = dict(scope["headers"])
    length = headers.get(b"content-length")
    if length is not None:
        return length.strip() not in (b"", b"0")
    return b"transfer-encoding" in headers


class AuthGate:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _has_body(scope):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        services = request.app.state.services
        if not services.settings.security.auth_enabled:
            await self.app(scope, receive, send)
            return
        try:
            await resolve_principal(request, services)
        except AppError as exc:
            from ai_med_extract.audit.refusals import record_refusal

            await record_refusal(request, services, exc)
            headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, TooManyRequests) else None
            response = envelope(exc.status_code, exc.code, exc.message, exc.details, headers)
            response.headers["connection"] = "close"  # the unread body is dropped with the connection
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
