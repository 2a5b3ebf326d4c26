"""API keys: random tokens shown once, stored as HMAC-SHA256 digests keyed by the API-key hashing key.

Each row records the key id of the hashing key (``security/keyring.py``). A token is found by its
prefix and checked against its row's key; a token hashed under an earlier key (a previous version,
a previous master secret, or the master secret itself before key ids) is re-hashed under the
current key the first time it authenticates, so after ``keys rotate --purpose api-keys`` the keys
in use move over by themselves and ``keys status`` shows which ones have not been used since.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ai_med_extract.db.base import utcnow
from ai_med_extract.db.models import ApiKey, Role
from ai_med_extract.security.keyring import Key, Keyring, Purpose, hmac_hex

logger = logging.getLogger(__name__)

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
    def __init__(self, keyring: Keyring):
        self._keyring = keyring

    def digest(self, token: str, key: Key | None = None) -> str:
        return hmac_hex(key or self._keyring.current(Purpose.api_keys), token.encode())

    async def create(
        self, session: AsyncSession, *, name: str, role: Role, tenant: str | None = None
    ) -> tuple[ApiKey, str]:
        token = KEY_PREFIX + secrets.token_urlsafe(32)
        key = self._keyring.current(Purpose.api_keys)
        row = ApiKey(name=name, prefix=token[:12], key_hash=self.digest(token, key), key_id=key.kid,
                     role=role.value, tenant=tenant)
        session.add(row)
        await session.flush()
        return row, token

    async def authenticate(self, session: AsyncSession, token: str) -> Principal | None:
        if not token.startswith(KEY_PREFIX) or len(token) > 200:
            return None
        rows = (await session.execute(select(ApiKey).where(ApiKey.prefix == token[:12]))).scalars().all()
        row = next((r for r in rows if self._matches(r, token)), None)
        if row is None or row.revoked_at is not None:
            return None
        principal = Principal(
            user_id=f"key:{row.id}:{row.name}", role=Role(row.role), key_id=row.id, tenant=row.tenant
        )
        current = self._keyring.current(Purpose.api_keys)
        if row.key_id != current.kid:
            await self._rehash(session, row, token, current)
        return principal

    def _matches(self, row: ApiKey, token: str) -> bool:
        return any(
            hmac.compare_digest(self.digest(token, key), row.key_hash)
            for key in self._keyring.candidates(Purpose.api_keys, row.key_id)
        )

    async def _rehash(self, session: AsyncSession, row: ApiKey, token: str, current: Key) -> None:
        """Move a key hashed under an earlier hashing key to the current one (its own commit)."""
        key_id = row.id
        row.key_hash, row.key_id = self.digest(token, current), current.kid
        try:
            await session.commit()
        except Exception as exc:  # another replica did it first, or a read-only moment: next time
            await session.rollback()
            logger.warning("api key re-hash deferred", extra={"api_key": key_id, "error_type": type(exc).__name__})

    async def counts_by_key_id(self, session: AsyncSession) -> dict[str | None, int]:
        """Active API keys per hashing key id (``keys status``)."""
        rows = (await session.execute(
            select(ApiKey.key_id, func.count()).where(ApiKey.revoked_at.is_(None)).group_by(ApiKey.key_id)
        )).all()
        return {r[0]: int(r[1]) for r in rows}

    async def revoke(self, session: AsyncSession, key_id: int) -> bool:
        row = await session.get(ApiKey, key_id)
        if row is None or row.revoked_at is not None:
            return False
        row.revoked_at = utcnow()
        return True

    async def count_active(self, session: AsyncSession) -> int:
        rows = (await session.execute(select(ApiKey.id).where(ApiKey.revoked_at.is_(None)))).all()
        return len(rows)
