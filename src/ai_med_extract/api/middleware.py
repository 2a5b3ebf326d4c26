"""Pure ASGI middleware: correlation ids, security headers, body-size guard and request metrics."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

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
    def __init__(self, app: ASGIApp, *, max_body_bytes: int, hsts: bool):
        self.app = app
        self.max_body_bytes = max_body_bytes
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

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                extra = [*SECURITY_HEADERS, (b"x-request-id", request_id.encode())]
                if self.hsts:
                    extra.append(HSTS)
                existing = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    (k, v) for k, v in extra if k not in existing
                ]
            await send(message)

        try:
            length = headers.get(b"content-length")
            if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
                await self._too_large(send_with_headers)
                return
            await self.app(scope, self._limited(receive), send_with_headers)
        except _BodyTooLarge:
            await self._too_large(send_with_headers)
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

    def _limited(self, receive: Receive) -> Receive:
        seen = 0

        async def wrapped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    raise _BodyTooLarge
            return message

        return wrapped

    async def _too_large(self, send: Send) -> None:
        body = json.dumps(
            {"error": {"code": "PAYLOAD_TOO_LARGE", "message": "the request body is too large",
                       "details": {"max_bytes": self.max_body_bytes}}}
        ).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


class _BodyTooLarge(Exception):
    pass
