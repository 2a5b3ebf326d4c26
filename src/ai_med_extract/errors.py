"""One exception hierarchy for the whole product.

Each error carries an HTTP status and a stable machine-readable ``code``; the API renders it as
``{"error": {"code", "message", "details"}}``. Messages and details must never contain patient data:
say *what kind* of thing went wrong (sizes, types, ids), never echo document content.
"""

from __future__ import annotations

from typing import Any, ClassVar


class AppError(Exception):
    status_code: ClassVar[int] = 500
    code: ClassVar[str] = "INTERNAL_ERROR"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or {}
        if code is not None:
            self.code = code  # type: ignore[misc]

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class BadRequest(AppError):
    status_code = 400
    code = "BAD_REQUEST"


class Unauthorized(AppError):
    status_code = 401
    code = "UNAUTHORIZED"


class Forbidden(AppError):
    status_code = 403
    code = "FORBIDDEN"


class NotFound(AppError):
    status_code = 404
    code = "NOT_FOUND"


class Conflict(AppError):
    status_code = 409
    code = "CONFLICT"


class PreconditionFailed(AppError):
    """An ``If-Match`` precondition names a version that is no longer the current one."""

    status_code = 412
    code = "PRECONDITION_FAILED"


class PayloadTooLarge(AppError):
    status_code = 413
    code = "PAYLOAD_TOO_LARGE"


class UnsupportedMediaType(AppError):
    status_code = 415
    code = "UNSUPPORTED_MEDIA_TYPE"


class Unprocessable(AppError):
    """The input is of a supported kind but cannot be processed (corrupt, encrypted, too long...)."""

    status_code = 422
    code = "UNPROCESSABLE"


class TooManyRequests(AppError):
    status_code = 429
    code = "RATE_LIMITED"

    def __init__(self, message: str, *, retry_after: int, details: dict[str, Any] | None = None):
        super().__init__(message, details=details)
        self.retry_after = retry_after


class ServiceUnavailable(AppError):
    status_code = 503
    code = "SERVICE_UNAVAILABLE"

    def __init__(
        self,
        message: str,
        *,
        retry_after: int | None = None,
        details: dict[str, Any] | None = None,
        code: str | None = None,
    ):
        super().__init__(message, details=details, code=code)
        self.retry_after = retry_after


class Timeout(AppError):
    status_code = 504
    code = "TIMEOUT"
