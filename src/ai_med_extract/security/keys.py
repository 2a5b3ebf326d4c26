"""API keys: random tokens shown once, stored as HMAC-SHA256 digests keyed by the server secret."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ai_med_extract.db.base import utcnow
from ai_med_extract.db.models import ApiKey
from ai_med_extract.security.role import Role

KEY_PREFIX = "ame_"


@dataclass(frozen=True)
class Principal:
    """Who is calling. ``user_id`` is what the audit trail records."""

    user_id: str
    role: Role
    key_id: int | None = None
    tenant: str | None = None

    def has(self, role: Role) -> bool:
        return self.role.rank >= role.rank


ANONYMOUS_ADMIN = Principal(user_id="anonymous", role=Role.admin)


class KeyService:
    def __init__(self, secret: bytes):
        self._secret = secret

    def digest(self, token: str) -> str:
        return hmac.new(self._secret, token.encode(), hashlib.sha256).hexdigest()

    async def create(
        self, session: AsyncSession, *, name: str, role: Role, tenant: str | None = None
    ) -> tuple[ApiKey, str]:
        token = KEY_PREFIX + secrets.token_urlsafe(32)
        row = ApiKey(name=name, prefix=token[:12], key_hash=self.digest(token), role=role.value, tenant=tenant)
        session.add(row)
        await session.flush()
        return row, token

    async def authenticate(self, session: AsyncSession, token: str) -> Principal | None:
        if not token.startswith(KEY_PREFIX) or len(token) > 200:
            return None
        row = (
            await session.execute(select(ApiKey).where(ApiKey.key_hash == self.digest(token)))
        ).scalar_one_or_none()
        if row is None or row.revoked_at is not None:
            return None
        return Principal(
            user_id=f"key:{row.id}:{row.name}", role=Role(row.role), key_id=row.id, tenant=row.tenant
        )

    async def revoke(self, session: AsyncSession, key_id: int) -> bool:
        row = await session.get(ApiKey, key_id)
        if row is None or row.revoked_at is not None:
            return False
        row.revoked_at = utcnow()
        return True

    async def count_active(self, session: AsyncSession) -> int:
        rows = (await session.execute(select(ApiKey.id).where(ApiKey.revoked_at.is_(None)))).all()
        return len(rows)
