"""Rotating a purpose's key (``ai-med-extract keys rotate --purpose api-keys|audit|phi``).

Rotation moves a derived key to its next version (``key_versions``) and records who did it in the
audit trail, in one transaction. What it does to data made under the previous key:

- ``api-keys``: stored hashes stay; a key still authenticates and is re-hashed under the new key on
  its next use (``keys status`` counts the keys not yet moved; revoke and re-issue those to stop the
  previous key being accepted for them).
- ``audit``: the chain key and the checkpoint key both. The rotation's own audit row is the first one
  signed with the new chain key; it links to the last row signed with the previous key, so the chain
  runs on unbroken and ``audit verify`` checks each segment with its own key. A checkpoint signed
  with the new checkpoint key is written right after.
- ``phi``: new documents get surrogates, date shifts and patient references from the new key, so the
  same patient's pseudonyms differ before and after the rotation (a document scrubbed under the
  previous key keeps its own); stored re-identification mappings are unaffected (they are encrypted
  with the storage key) and record the key id of their patient reference.

Running services and workers keep the keys they started with until restarted; what they make in the
meantime is signed with the previous key and still verifies.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession

from ai_med_extract.audit.trail import AuditEntry, AuditTrail
from ai_med_extract.config import Settings
from ai_med_extract.security.keyring import Purpose, load_keyring, store_versions


class RotationTarget(StrEnum):
    api_keys = "api-keys"
    audit = "audit"
    phi = "phi"

    @property
    def purposes(self) -> tuple[Purpose, ...]:
        if self is RotationTarget.audit:
            return (Purpose.audit_chain, Purpose.audit_checkpoint)
        return (Purpose(self.value),)


class KeyConfigured(ValueError):
    """The purpose's key comes from settings: rotating it is a settings change, not a command."""


@dataclass(frozen=True)
class Rotation:
    target: RotationTarget
    previous: dict[Purpose, str | None]
    current: dict[Purpose, str | None]
    audit_row: int


async def rotate(session: AsyncSession, settings: Settings, target: RotationTarget, *, actor: str) -> Rotation:
    """Move ``target``'s keys to their next version and audit it; the caller's transaction commits."""
    keyring = await load_keyring(settings, session)
    for purpose in target.purposes:
        if keyring.is_configured(purpose):
            setting = f"AME_SECURITY__KEYS__{purpose.name.upper()}"
            raise KeyConfigured(
                f"the {purpose.value} key is configured ({setting}): rotate it by putting the new key first "
                "in that list, keeping the previous ones after it, and restarting"
            )
    rotated = keyring.rotated(target.purposes)
    await store_versions(session, rotated, target.purposes)
    previous = {p: keyring.current(p).kid for p in target.purposes}
    current = {p: rotated.current(p).kid for p in target.purposes}
    row = await AuditTrail(rotated).append(session, AuditEntry(
        action="keys.rotate",
        resource_type="key",
        resource_id=target.value,
        user_id=actor,
        request_data={"previous": {p.value: k for p, k in previous.items()},
                      "current": {p.value: k for p, k in current.items()}},
    ))
    return Rotation(target, previous, current, row.id)
