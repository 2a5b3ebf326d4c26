"""Pure ASGI middleware: correlation ids, security headers, body-size guard and request metrics."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ai_med_extract.observability import metrics
from ai_med_extract.observability.logs import correlation_id

logger = logging.getLogger("ai_med_extract.http")

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"x-xss-protection", b"1; mode=block"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        b"connect-src 'self'; frame-ancestors 'none'",
    ),
]
HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9\-_.]{8,64}$")


class ServiceMiddleware:
    """``max_body_bytes`` caps a multipart body, ``max_file_bytes`` each of its parts (counted while
    the body streams in, so nothing over the limit is ever spooled), ``max_other_body_bytes`` any
    other body (JSON). Over a cap, declared or chunked, the answer is 413 with a stable code."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        hsts: bool,
        max_file_bytes: int | None = None,
        max_other_body_bytes: int | None = None,
    ):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_file_bytes = max_file_bytes or max_body_bytes
        self.max_other_body_bytes = max_other_body_bytes or max_body_bytes
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        token = correlation_id.set(request_id)
        started = time.perf_counter()
        status_holder = {"status": 500}
        method = scope["method"]
        guard = _BodyGuard(self, headers)

        async def send_with_headers(message: Message) -> None:
            if guard.refused is not None and not guard.answering:
                return  # the app's answer to a body we cut off (FastAPI makes it a 400): replaced by 413
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                extra = [*SECURITY_HEADERS, (b"x-request-id", request_id.encode())]
                if self.hsts:
                    extra.append(HSTS)
                decision = (scope.get("state") or {}).get("rate_limit")
                if decision is not None:
                    extra.extend((k.lower().encode(), v.encode()) for k, v in decision.headers().items())
                existing = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    (k, v) for k, v in extra if k not in existing
                ]
                guard.response_started = True
            await send(message)

        try:
            declared = guard.declared_too_large()
            if declared is not None:
                guard.refused = declared
            else:
                try:
                    await self.app(scope, guard.wrap(receive), send_with_headers)
                except _BodyTooLarge:
                    pass
            if guard.refused is not None and not guard.response_started:
                guard.answering = True
                await self._too_large(send_with_headers, *guard.refused)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", "unmatched")
            elapsed = time.perf_counter() - started
            status = status_holder["status"]
            metrics.HTTP_REQUESTS.labels(method, endpoint, str(status)).inc()
            metrics.HTTP_DURATION.labels(method, endpoint).observe(elapsed)
            if endpoint not in ("/health/live", "/metrics"):
                logger.info(
                    "request",
                    extra={"method": method, "endpoint": endpoint, "status": status,
                           "duration_ms": round(elapsed * 1000, 1)},
                )
            correlation_id.reset(token)

    async def _too_large(self, send: Send, code: str, max_bytes: int) -> None:
        message = "a file is larger than the upload limit" if code == "FILE_TOO_LARGE" else "the request body is too large"
        body = json.dumps({"error": {"code": code, "message": message, "details": {"max_bytes": max_bytes}}}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


class _BodyGuard:
    """Counts a request body as the app reads it; a multipart body also per part."""

    def __init__(self, owner: ServiceMiddleware, headers: dict[bytes, bytes]):
        content_type, params = parse_options_header(headers.get(b"content-type"))
        self.multipart = content_type == b"multipart/form-data" and b"boundary" in params
        self.limit = owner.max_body_bytes if self.multipart else owner.max_other_body_bytes
        self.max_file = owner.max_file_bytes
        self.headers = headers
        self.refused: tuple[str, int] | None = None
        self.answering = False
        self.response_started = False
        self._parser: MultipartParser | None = None
        if self.multipart:
            self._part = 0

            def on_part_begin() -> None:
                self._part = 0

            def on_part_data(data: bytes, start: int, end: int) -> None:
                self._part += end - start
                if self._part > self.max_file:
                    raise _FileTooLarge

            self._parser = MultipartParser(
                params[b"boundary"], callbacks={"on_part_begin": on_part_begin, "on_part_data": on_part_data}
            )

    def declared_too_large(self) -> tuple[str, int] | None:
        length = self.headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return ("PAYLOAD_TOO_LARGE", self.limit)
        return None

    def wrap(self, receive: Receive) -> Receive:
        seen = 0

        async def wrapped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] != "http.request":
                return message
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.limit:
                self.refused = ("PAYLOAD_TOO_LARGE", self.limit)
                raise _BodyTooLarge
            if self._parser is not None and chunk:
                try:
                    self._parser.write(chunk)
                except _FileTooLarge:
                    self.refused = ("FILE_TOO_LARGE", self.max_file)
                    raise _BodyTooLarge from None
                except Exception:
                    self._parser = None  # a malformed body: the app's own parser reports it
            return message

        return wrapped


class _BodyTooLarge(Exception):
    pass


class _FileTooLarge(Exception):
    pass
