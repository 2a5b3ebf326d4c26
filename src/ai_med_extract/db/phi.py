"""Encrypted re-identification mappings of reversible PHI scrubbing, and their repository.

A mapping (token -> original value) is stored as one Fernet token (the storage key); its row keeps
only metadata: sizes, counts, who made it, an HMAC of the patient key (never the key itself).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Integer, LargeBinary, String, delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from ai_med_extract.db.base import Base, Sealer, UTCDateTime, utcnow


class PhiMapping(Base):
    __tablename__ = "phi_mappings"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    patient_ref: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    # Which PHI key made patient_ref (security/keyring.py); empty: the master secret (before key ids).
    key_id: Mapped[str | None] = mapped_column(String(24), nullable=True)
    created_by: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    tenant: Mapped[str | None] = mapped_column(String(64), nullable=True)
    token_count: Mapped[int] = mapped_column(Integer)
    mapping_enc: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


@dataclass(frozen=True, slots=True)
class StoredMapping:
    id: str
    mapping: dict[str, str]
    created_by: str | None
    tenant: str | None


class PhiMappingRepository:
    def __init__(self, cipher: Sealer) -> None:
        self._cipher = cipher

    async def save(
        self,
        session: AsyncSession,
        mapping: dict[str, str],
        *,
        patient_ref: str | None = None,
        key_id: str | None = None,
        created_by: str | None = None,
        tenant: str | None = None,
    ) -> str:
        row = PhiMapping(
            id=str(uuid.uuid4()),
            patient_ref=patient_ref,
            key_id=key_id if patient_ref is not None else None,
            created_by=created_by,
            tenant=tenant,
            token_count=len(mapping),
            mapping_enc=self._cipher.encrypt_json(mapping),
        )
        session.add(row)
        await session.flush()
        return row.id

    async def load(self, session: AsyncSession, mapping_id: str) -> StoredMapping | None:
        row = (await session.execute(select(PhiMapping).where(PhiMapping.id == mapping_id))).scalar_one_or_none()
        if row is None:
            return None
        value = self._cipher.decrypt_json(row.mapping_enc)
        return StoredMapping(row.id, {str(k): str(v) for k, v in value.items()}, row.created_by, row.tenant)

    async def delete_older_than(self, session: AsyncSession, cutoff: datetime) -> int:
        """Retention: remove mappings created before ``cutoff`` (their tokens can no longer be undone)."""
        result = await session.execute(delete(PhiMapping).where(PhiMapping.created_at < cutoff))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]
