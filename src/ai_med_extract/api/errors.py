"""The one error handler: every failure leaves as ``{"error": {"code", "message", "details"}}``.

Unexpected exceptions become a 500 with a fixed message; their text is never sent (or logged: it
may quote patient data). Failed requests to audited routes leave an audit row of their own.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ai_med_extract.api.deps import client_ip
from ai_med_extract.audit.refusals import record_refusal
from ai_med_extract.audit.trail import AuditEntry
from ai_med_extract.errors import AppError, ServiceUnavailable, TooManyRequests, Unauthorized
from ai_med_extract.observability.logs import log_exception

logger = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "VALIDATION_ERROR",
    429: "RATE_LIMITED",
}


def envelope(status: int, code: str, message: str, details: dict[str, Any] | None = None,
             headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, "details": details or {}}},
        status_code=status,
        headers=headers,
    )


async def _audit_failure(request: Request, status: int, code: str) -> None:
    if not getattr(request.state, "audit_pending", False):
        return
    services = request.app.state.services
    principal = getattr(request.state, "principal", None)
    route = request.scope.get("route")
    path = getattr(route, "path", request.url.path)
    try:
        async with services.sessionmaker() as session, session.begin():
            await services.audit.append(
                session,
                AuditEntry(
                    action=f"{request.method} {path}",
                    resource_type="request",
                    resource_id=None,
                    phi_accessed=False,
                    user_id=principal.user_id if principal else None,
                    ip_address=client_ip(request),
                    user_agent=request.headers.get("user-agent"),
                    request_data={
                        "path_params": {k: str(v)[:64] for k, v in request.path_params.items()},
                        **({"intent": intent} if (intent := getattr(request.state, "audit_intent", None)) else {}),
                    },
                    response_status=status,
                    error_message=code,
                ),
            )
    except Exception as exc:
        log_exception(logger, "could not write the audit row of a failed request", exc)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(request: Request, exc: AppError) -> JSONResponse:
        headers = None
        if isinstance(exc, TooManyRequests | ServiceUnavailable) and getattr(exc, "retry_after", None):
            headers = {"Retry-After": str(exc.retry_after)}
        if exc.status_code >= 500:
            logger.error("request failed", extra={"error_code": exc.code, "status": exc.status_code})
        if isinstance(exc, Unauthorized | TooManyRequests):
            await record_refusal(request, request.app.state.services, exc)
        else:
            await _audit_failure(request, exc.status_code, exc.code)
        return envelope(exc.status_code, exc.code, exc.message, exc.details, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Report where and what kind of problem, never the offending input value.
        problems = [
            {"loc": [str(p) for p in err.get("loc", ())], "type": err.get("type"), "msg": err.get("msg")}
            for err in exc.errors()[:20]
        ]
        missing_file = any(p["loc"][-1:] == ["files"] and p["type"] == "missing" for p in problems)
        code = "FILE_REQUIRED" if missing_file else "VALIDATION_ERROR"
        await _audit_failure(request, 422, code)
        return envelope(422, code, "the request is not valid", {"problems": problems})

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "HTTP_ERROR")
        message = exc.detail if isinstance(exc.detail, str) and exc.status_code < 500 else "request failed"
        return envelope(exc.status_code, code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log_exception(logger, "unhandled error", exc, path=getattr(request.scope.get("route"), "path", "?"))
        await _audit_failure(request, 500, "INTERNAL_ERROR")
        return envelope(500, "INTERNAL_ERROR", "an internal error occurred; see the service logs")
