"""Keys for separate purposes, derived from the one master secret with HKDF (RFC 5869).

``derive(secret, Purpose.audit_checkpoint)`` gives a 32-byte key used for nothing else, so a key
exposed in one place (a checkpoint file's verifier, say) says nothing about the others.
"""

from __future__ import annotations

from enum import StrEnum

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


class Purpose(StrEnum):
    audit_checkpoint = "audit-checkpoint"


def derive(secret: bytes, purpose: Purpose, *, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None,
                info=f"ai-med-extract/{purpose.value}/v1".encode()).derive(secret)
