"""Dependencies routes declare with ``Annotated`` aliases.

``SessionDep`` opens one transaction per request and commits it when the route returns (rolls back
on error), so an audit row recorded through ``AuditDep`` commits or vanishes with the action.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from ai_med_extract.audit.trail import AuditEntry
from ai_med_extract.config import Settings
from ai_med_extract.errors import Forbidden, TooManyRequests, Unauthorized
from ai_med_extract.observability import metrics
from ai_med_extract.security.access import Access
from ai_med_extract.security.clients import resolve_client
from ai_med_extract.security.keys import ANONYMOUS_ADMIN, Principal
from ai_med_extract.security.role import Role
from ai_med_extract.services import Services


def get_services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


ServicesDep = Annotated[Services, Depends(get_services)]


def get_settings(services: ServicesDep) -> Settings:
    return services.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_session(services: ServicesDep) -> AsyncIterator[AsyncSession]:
    async with services.sessionmaker() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


# scope="function": the transaction commits before the response is sent, so a client never receives
# data whose audit row failed to commit, and the audit writer lock is not held while bytes go out.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


def client_ip(request: Request) -> str | None:
    """The client's address: the peer, or ``X-Forwarded-For`` when the peer is a trusted proxy."""
    cached = getattr(request.state, "client_ip", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    settings: Settings = request.app.state.settings
    found = resolve_client(
        request.client.host if request.client else None,
        request.headers.getlist("x-forwarded-for"),
        settings.security.trusted_proxies,
    )
    request.state.client_ip = found
    return found


def _token(request: Request) -> str | None:
    token = request.headers.get("x-api-key")
    if token:
        return token.strip()
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return None


async def resolve_principal(request: Request, services: Services) -> Principal:
    """Resolve the caller and apply rate limits (per IP always, per key when there is one).

    Runs once per request: from the body gate (before a body is read) or from ``authenticate``."""
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    ip = client_ip(request) or "unknown"
    limiter = services.limiter
    principal: Principal
    if services.settings.security.auth_enabled:
        token = _token(request)
        found = services.keys.cached(token) if token else None
        if token and found is None:
            async with services.sessionmaker() as session:
                found = await services.keys.authenticate(session, token)
        if found is None:
            decision = await limiter.hit(ip, None)
            request.state.rate_limit = decision
            if not decision.allowed:
                raise TooManyRequests("rate limit exceeded", retry_after=decision.retry_after,
                                      details={"scope": decision.scope})
            if not token:
                raise Unauthorized("an API key is required (X-API-Key header)", code="AUTH_REQUIRED")
            raise Unauthorized("the API key is not valid", code="AUTH_INVALID")
        principal = found
    else:
        principal = ANONYMOUS_ADMIN
    decision = await limiter.hit(ip, principal.key_id)
    request.state.rate_limit = decision
    if not decision.allowed:
        raise TooManyRequests(
            "rate limit exceeded", retry_after=decision.retry_after, details={"scope": decision.scope}
        )
    request.state.principal = principal
    return principal


async def authenticate(request: Request, services: ServicesDep) -> Principal:
    return await resolve_principal(request, services)


def require_role(role: str | Role) -> Callable[..., Coroutine[Any, Any, Principal]]:
    needed = Role(role)

    async def dependency(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if not principal.has(needed):
            raise Forbidden(f"this action needs the {needed.value} role", code="ROLE_REQUIRED",
                            details={"required": needed.value, "role": principal.role.value})
        return principal

    return dependency


ReaderDep = Annotated[Principal, Depends(require_role(Role.reader))]
ClinicianDep = Annotated[Principal, Depends(require_role(Role.clinician))]
AdminDep = Annotated[Principal, Depends(require_role(Role.admin))]


class Audit:
    """Records audit rows in the request's transaction, with who/where filled in."""

    def __init__(self, request: Request, services: Services, session: AsyncSession, principal: Principal):
        self._request = request
        self._services = services
        self._session = session
        self._principal = principal

    @property
    def principal(self) -> Principal:
        return self._principal

    def _entry(
        self,
        *,
        action: str,
        resource_type: str | None,
        resource_id: str | None,
        phi_accessed: bool,
        request_data: dict[str, Any] | None,
        response_status: int,
        error_message: str | None,
        access: Access | None,
    ) -> AuditEntry:
        if access is not None and access.cross_owner:
            request_data = {**(request_data or {}), **access.audit_data()}
        return AuditEntry(
            action=action,
            resource_type=resource_type,
            resource_id=resource_id,
            phi_accessed=phi_accessed,
            user_id=self._principal.user_id,
            ip_address=client_ip(self._request),
            user_agent=self._request.headers.get("user-agent"),
            request_data=request_data,
            response_status=response_status,
            error_message=error_message,
        )

    async def record(
        self,
        *,
        action: str,
        resource_type: str | None = None,
        resource_id: str | None = None,
        phi_accessed: bool = True,
        request_data: dict[str, Any] | None = None,
        response_status: int = 200,
        error_message: str | None = None,
        access: Access | None = None,
    ) -> None:
        """Record the action in the request's transaction: the row commits or vanishes with it.

        ``access``: the caller's access to the resource; a cross-owner read is marked in the row.
        Call it last, just before the route returns: from here to the commit the chain is locked.
        """
        entry = self._entry(
            action=action, resource_type=resource_type, resource_id=resource_id, phi_accessed=phi_accessed,
            request_data=request_data, response_status=response_status, error_message=error_message, access=access,
        )
        await self._services.audit.append(self._session, entry)
        metrics.AUDIT_ROWS.labels(action).inc()
        self._request.state.audited = True

    async def intent(
        self,
        *,
        action: str,
        resource_type: str | None = None,
        resource_id: str | None = None,
        phi_accessed: bool = True,
        request_data: dict[str, Any] | None = None,
    ) -> int:
        """Record that slow work (a generation, say) starts, committed at once in a transaction of its
        own, so the chain is locked for milliseconds and never while the work runs. ``outcome`` (or
        the error handler, on failure) records how it ended, pointing back at this row."""
        entry = self._entry(
            action=action, resource_type=resource_type, resource_id=resource_id, phi_accessed=phi_accessed,
            request_data=request_data, response_status=102, error_message=None, access=None,
        )
        async with self._services.sessionmaker() as session, session.begin():
            row = await self._services.audit.append(session, entry)
        metrics.AUDIT_ROWS.labels(action).inc()
        self._request.state.audit_intent = row.id
        self._request.state.audited = True
        return row.id

    async def outcome(
        self,
        *,
        action: str,
        response_status: int = 200,
        request_data: dict[str, Any] | None = None,
        error_message: str | None = None,
    ) -> None:
        """Record how the work that ``intent`` announced ended, in a short transaction of its own."""
        intent = getattr(self._request.state, "audit_intent", None)
        entry = self._entry(
            action=action, resource_type="audit_log", resource_id=str(intent) if intent else None,
            phi_accessed=False, request_data={**(request_data or {}), "intent": intent},
            response_status=response_status, error_message=error_message, access=None,
        )
        async with self._services.sessionmaker() as session, session.begin():
            await self._services.audit.append(session, entry)
        metrics.AUDIT_ROWS.labels(action).inc()
        self._request.state.audit_intent = None


async def get_audit(
    request: Request,
    services: ServicesDep,
    session: SessionDep,
    principal: Annotated[Principal, Depends(authenticate)],
) -> Audit:
    # If the route then fails, the error handler records the failed attempt in its own transaction.
    request.state.audit_pending = True
    return Audit(request, services, session, principal)


AuditDep = Annotated[Audit, Depends(get_audit)]
