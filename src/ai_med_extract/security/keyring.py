"""One key per purpose, derived from the master secret with HKDF (RFC 5869) or configured, with
key ids so that data made under a previous key keeps verifying after a rotation.

Purposes: API-key hashes, the audit hash chain, the audit checkpoints' signatures and the PHI
surrogates (seeds, date shifts, patient references). A key exposed in one place says nothing about
the others: ``derive(master, purpose, version)`` is one-way.

Where each key comes from, per purpose:

- ``AME_SECURITY__KEYS__<PURPOSE>`` configured: a list of secrets, the first signs, all verify
  (rotation: put the new one first, keep the old ones after it, restart);
- otherwise derived from ``AME_SECURITY__SECRET_KEY`` at the purpose's *version* (``key_versions``
  table, 1 until the first ``ai-med-extract keys rotate``); every earlier version stays derivable,
  so it keeps verifying. ``AME_SECURITY__PREVIOUS_SECRET_KEYS`` lets data made under a replaced
  master secret verify too.

Every stored hash, audit row and checkpoint records the *key id* it was made with: ``v<version>-<fp>``
(derived) or ``c-<fp>`` (configured), where ``fp`` is a one-way fingerprint of the key. Data from
before key ids existed (key id empty) was made with the master secret itself: it is verified with it
(API keys move to the current key on their next use).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ai_med_extract.db.base import utcnow
from ai_med_extract.db.tables import KeyVersion

if TYPE_CHECKING:
    from ai_med_extract.config import Settings

_DERIVED = re.compile(r"^v([1-9][0-9]{0,5})-([0-9a-f]{10})$")
_CONFIGURED = re.compile(r"^c-([0-9a-f]{10})$")


class Purpose(StrEnum):
    api_keys = "api-keys"
    audit_chain = "audit-chain"
    audit_checkpoint = "audit-checkpoint"
    phi = "phi"


@lru_cache(maxsize=256)
def derive(secret: bytes, purpose: Purpose, version: int = 1, *, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None,
                info=f"ai-med-extract/{purpose.value}/v{version}".encode()).derive(secret)


def fingerprint(key: bytes) -> str:
    """A short one-way id of a key (names it in stored data without revealing it)."""
    return hmac.new(key, b"ai-med-extract/key-id", hashlib.sha256).hexdigest()[:10]


@dataclass(frozen=True, slots=True)
class Key:
    kid: str | None  # None: the master secret as used before key ids existed
    secret: bytes = field(repr=False)


@dataclass(frozen=True)
class Keyring:
    masters: tuple[bytes, ...]  # the current master secret first, then previous ones (verify only)
    configured: dict[Purpose, tuple[bytes, ...]] = field(default_factory=dict)
    versions: dict[Purpose, int] = field(default_factory=dict)

    @classmethod
    def from_secret(cls, secret: bytes, versions: dict[Purpose, int] | None = None) -> Keyring:
        return cls(masters=(secret,), versions=dict(versions or {}))

    @classmethod
    def from_settings(cls, settings: Settings, master: bytes, versions: dict[Purpose, int] | None = None) -> Keyring:
        security = settings.security
        configured = {
            purpose: tuple(s.get_secret_value().encode() for s in values)
            for purpose, values in security.keys.by_purpose().items()
            if values
        }
        previous = tuple(s.get_secret_value().encode() for s in security.previous_secret_keys)
        return cls(masters=(master, *previous), configured=configured, versions=dict(versions or {}))

    def is_configured(self, purpose: Purpose) -> bool:
        return purpose in self.configured

    def version(self, purpose: Purpose) -> int:
        return self.versions.get(purpose, 1)

    def current(self, purpose: Purpose) -> Key:
        """The key new data of this purpose is made with."""
        if purpose in self.configured:
            secret = self.configured[purpose][0]
            return Key(f"c-{fingerprint(secret)}", secret)
        version = self.version(purpose)
        secret = derive(self.masters[0], purpose, version)
        return Key(f"v{version}-{fingerprint(secret)}", secret)

    def candidates(self, purpose: Purpose, kid: str | None) -> list[Key]:
        """The keys data stored with key id ``kid`` may have been made with (usually one; none for
        an unknown id)."""
        if kid is None:
            if purpose is Purpose.audit_checkpoint:  # checkpoints were signed with derived v1 keys from the start
                return [Key(None, derive(m, purpose, 1)) for m in self.masters]
            return [Key(None, m) for m in self.masters]
        derived = _DERIVED.match(kid)
        if derived:
            version, fp = int(derived.group(1)), derived.group(2)
            found = (derive(m, purpose, version) for m in self.masters)
            return [Key(kid, k) for k in found if hmac.compare_digest(fingerprint(k), fp)]
        configured = _CONFIGURED.match(kid)
        if configured:
            fp = configured.group(1)
            return [Key(kid, k) for k in self.configured.get(purpose, ()) if hmac.compare_digest(fingerprint(k), fp)]
        return []

    def rotated(self, purposes: Iterable[Purpose]) -> Keyring:
        versions = dict(self.versions)
        for purpose in purposes:
            versions[purpose] = self.version(purpose) + 1
        return Keyring(self.masters, self.configured, versions)


def hmac_hex(key: Key, message: bytes) -> str:
    return hmac.new(key.secret, message, hashlib.sha256).hexdigest()


# -- the key_versions table ------------------------------------------------------------------------


async def load_versions(session: AsyncSession) -> dict[Purpose, int]:
    rows = (await session.execute(select(KeyVersion.purpose, KeyVersion.version))).all()
    known = {p.value: p for p in Purpose}
    return {known[r.purpose]: int(r.version) for r in rows if r.purpose in known}


async def store_versions(session: AsyncSession, keyring: Keyring, purposes: Sequence[Purpose]) -> None:
    """Record the purposes' current versions (``keys rotate``); the caller's transaction commits."""
    for purpose in purposes:
        row = await session.get(KeyVersion, purpose.value)
        if row is None:
            session.add(KeyVersion(purpose=purpose.value, version=keyring.version(purpose),
                                   key_id=keyring.current(purpose).kid, rotated_at=utcnow()))
        else:
            row.version = keyring.version(purpose)
            row.key_id = keyring.current(purpose).kid or ""
            row.rotated_at = utcnow()
    await session.flush()


async def load_keyring(settings: Settings, session: AsyncSession) -> Keyring:
    from ai_med_extract.storage.secrets import load_secrets

    return Keyring.from_settings(settings, load_secrets(settings).secret_key, await load_versions(session))
