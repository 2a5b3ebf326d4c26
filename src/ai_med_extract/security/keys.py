"""API keys: random tokens shown once, stored as HMAC-SHA256 digests keyed by the API-key hashing key.

Each row records the key id of the hashing key (``security/keyring.py``). A token is found by its
prefix and checked against its row's key; a token hashed under an earlier key (a previous version,
a previous master secret, or the master secret itself before key ids) is re-hashed under the
current key the first time it authenticates, so after ``keys rotate --purpose api-keys`` the keys
in use move over by themselves and ``keys status`` shows which ones have not been used since.

A verified key is remembered in memory for a few seconds (``cache_s``), so a busy client costs one
HMAC per request rather than a database round trip. Revocation is honoured: a key revoked in this
process is forgotten at once (and cannot be remembered again), other processes hear of it through
a PostgreSQL notification (``KEYS_CHANNEL``, see ``jobs.events``), and the expiry bounds the rest.
Refused tokens are never remembered.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from ai_med_extract.db.base import utcnow
from ai_med_extract.db.tables import ApiKey
from ai_med_extract.security.keyring import Key, Keyring, Purpose, hmac_hex
from ai_med_extract.security.role import Role

logger = logging.getLogger(__name__)

KEY_PREFIX = "ame_"
KEYS_CHANNEL = "ame_api_key_revoked"  # payload: the revoked key's id


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
    def __init__(self, keyring: Keyring, *, cache_s: float = 5.0, cache_entries: int = 4096):
        self._keyring = keyring
        self._cache_s = cache_s
        self._cache_entries = cache_entries
        self._cache: dict[str, tuple[float, Principal]] = {}  # digest -> (expires, principal)
        self._revoked: dict[int, float] = {}  # key id -> until when it may not be cached again

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

    @staticmethod
    def well_formed(token: str) -> bool:
        return token.startswith(KEY_PREFIX) and len(token) <= 200

    def cached(self, token: str) -> Principal | None:
        """The principal of a key verified in the last ``cache_s`` seconds (no database access)."""
        if not self._cache_s or not self.well_formed(token):
            return None
        digest = self.digest(token)
        found = self._cache.get(digest)
        if found is None:
            return None
        expires, principal = found
        if expires <= time.monotonic():
            self._cache.pop(digest, None)
            return None
        return principal

    async def authenticate(self, session: AsyncSession, token: str) -> Principal | None:
        if not self.well_formed(token):
            return None
        started = time.monotonic()
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
        self._remember(self.digest(token), principal, started)
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

    def _remember(self, digest: str, principal: Principal, read_at: float) -> None:
        if not self._cache_s or principal.key_id is None:
            return
        if self._revoked.get(principal.key_id, 0.0) > read_at:
            return  # revoked while it was being read: the row we saw may predate the revocation
        if len(self._cache) >= self._cache_entries:
            now = time.monotonic()
            for stale in [d for d, (expires, _) in self._cache.items() if expires <= now]:
                del self._cache[stale]
            if len(self._cache) >= self._cache_entries:
                self._cache.pop(next(iter(self._cache)))  # the oldest entry
        self._cache[digest] = (read_at + self._cache_s, principal)

    def forget(self, key_id: int | None) -> None:
        """Stop trusting a key at once (revoked here or, by notification, in another process);
        ``None``: every key (revocations may have been missed)."""
        if key_id is None:
            self._cache.clear()
            return
        now = time.monotonic()
        self._revoked = {k: until for k, until in self._revoked.items() if until > now}
        # A lookup that read the row before the revocation committed must not cache it afterwards.
        self._revoked[key_id] = now + max(self._cache_s, 1.0) * 2
        for digest in [d for d, (_, p) in self._cache.items() if p.key_id == key_id]:
            del self._cache[digest]

    async def revoke(self, session: AsyncSession, key_id: int) -> bool:
        row = await session.get(ApiKey, key_id)
        if row is None or row.revoked_at is not None:
            return False
        row.revoked_at = utcnow()
        await session.flush()
        self.forget(key_id)
        if session.get_bind().dialect.name == "postgresql":  # other processes forget it at commit
            await session.execute(text("SELECT pg_notify(:channel, :payload)"),
                                  {"channel": KEYS_CHANNEL, "payload": str(key_id)})
        return True

    async def count_active(self, session: AsyncSession) -> int:
        rows = (await session.execute(select(ApiKey.id).where(ApiKey.revoked_at.is_(None)))).all()
        return len(rows)
