"""API keys: random tokens shown once, stored as HMAC-SHA256 digests keyed by the server secret.

A verified key is remembered in memory for a few seconds (``cache_s``), so a busy client costs one
HMAC per request rather than a database round trip. Revocation is honoured: a key revoked in this
process is forgotten at once (and cannot be remembered again), other processes hear of it through
a PostgreSQL notification (``KEYS_CHANNEL``, see ``jobs.events``), and the expiry bounds the rest.
Refused tokens are never remembered.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from ai_med_extract.db.base import utcnow
from ai_med_extract.db.models import ApiKey, Role

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
    def __init__(self, secret: bytes, *, cache_s: float = 5.0, cache_entries: int = 4096):
        self._secret = secret
        self._cache_s = cache_s
        self._cache_entries = cache_entries
        self._cache: dict[str, tuple[float, Principal]] = {}  # digest -> (expires, principal)
        self._revoked: dict[int, float] = {}  # key id -> until when it may not be cached again

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
        digest = self.digest(token)
        started = time.monotonic()
        row = (await session.execute(select(ApiKey).where(ApiKey.key_hash == digest))).scalar_one_or_none()
        if row is None or row.revoked_at is not None:
            return None
        principal = Principal(
            user_id=f"key:{row.id}:{row.name}", role=Role(row.role), key_id=row.id, tenant=row.tenant
        )
        self._remember(digest, principal, started)
        return principal

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
