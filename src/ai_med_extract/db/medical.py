"""Medical records: an extraction and its clinician corrections, versioned, content encrypted.

``medical_records`` holds the current version of each record; ``medical_record_versions`` every
version ever written (1 = the extraction, 2.. = corrections). Patient content (the source text and the
structured data) is stored as Fernet tokens made with the storage key; rows keep only metadata: ids,
versions, counts, who and when. Updates use optimistic concurrency: the caller names the version it
read, and a write against any other version is refused with 409.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, LargeBinary, String, UniqueConstraint, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from ai_med_extract.db.base import Base, BigIntPK, JSONType, Sealer, UTCDateTime, utcnow
from ai_med_extract.errors import Conflict, NotFound


class MedicalRecord(Base):
    __tablename__ = "medical_records"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    document_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    mode: Mapped[str] = mapped_column(String(16))
    counts: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    source_enc: Mapped[bytes] = mapped_column(LargeBinary)
    data_enc: Mapped[bytes] = mapped_column(LargeBinary)
    created_by: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    tenant: Mapped[str | None] = mapped_column(String(64), nullable=True)
    updated_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class MedicalRecordVersion(Base):
    __tablename__ = "medical_record_versions"
    __table_args__ = (UniqueConstraint("record_id", "version", name="uq_medical_record_versions_record_version"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    record_id: Mapped[str] = mapped_column(ForeignKey("medical_records.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    data_enc: Mapped[bytes] = mapped_column(LargeBinary)
    counts: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    changed_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


@dataclass(frozen=True, slots=True)
class VersionInfo:
    version: int
    changed_by: str | None
    reason: str | None
    counts: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class RecordView:
    id: str
    document_id: str | None
    version: int
    mode: str
    source: str
    data: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    created_by: str | None = None
    tenant: str | None = None


class MedicalRecordRepository:
    """All SQL for medical records. Flushes only; the request's session commits."""

    def __init__(self, cipher: Sealer) -> None:
        self._cipher = cipher

    async def create(
        self,
        session: AsyncSession,
        *,
        source: str,
        data: dict[str, Any],
        counts: dict[str, Any],
        mode: str,
        document_id: str | None = None,
        created_by: str | None = None,
        tenant: str | None = None,
    ) -> RecordView:
        now = utcnow()
        data_enc = self._cipher.encrypt_json(data)
        record = MedicalRecord(
            id=str(uuid.uuid4()),
            document_id=document_id,
            version=1,
            mode=mode,
            counts=counts,
            source_enc=self._cipher.encrypt(source.encode("utf-8")),
            data_enc=data_enc,
            created_by=created_by,
            tenant=tenant,
            updated_by=created_by,
            created_at=now,
            updated_at=now,
        )
        session.add(record)
        await session.flush()
        session.add(
            MedicalRecordVersion(
                record_id=record.id, version=1, data_enc=data_enc, counts=counts, changed_by=created_by,
                reason="extraction", created_at=now,
            )
        )
        await session.flush()
        return RecordView(record.id, document_id, 1, mode, source, data, now, now, created_by, tenant)

    async def _row(self, session: AsyncSession, record_id: str) -> MedicalRecord:
        row = await session.get(MedicalRecord, record_id) if _is_uuid(record_id) else None
        if row is None:
            raise NotFound("no such medical record", code="MEDICAL_RECORD_NOT_FOUND",
                           details={"record_id": record_id[:64]})
        return row

    async def latest_for_document(self, session: AsyncSession, document_id: str) -> str | None:
        found = await session.execute(
            select(MedicalRecord.id)
            .where(MedicalRecord.document_id == document_id)
            .order_by(MedicalRecord.created_at.desc())
            .limit(1)
        )
        return found.scalar_one_or_none()

    async def get(self, session: AsyncSession, record_id: str, *, version: int | None = None) -> RecordView:
        row = await self._row(session, record_id)
        data_enc = row.data_enc
        current = row.version
        if version is not None and version != row.version:
            found = await session.execute(
                select(MedicalRecordVersion).where(
                    MedicalRecordVersion.record_id == record_id, MedicalRecordVersion.version == version
                )
            )
            old = found.scalar_one_or_none()
            if old is None:
                raise NotFound("no such version of the medical record", code="MEDICAL_VERSION_NOT_FOUND",
                               details={"version": version, "current_version": row.version})
            data_enc, current = old.data_enc, old.version
        return RecordView(
            row.id, row.document_id, current, row.mode,
            self._cipher.decrypt(row.source_enc).decode("utf-8"),
            self._cipher.decrypt_json(data_enc), row.created_at, row.updated_at, row.created_by, row.tenant,
        )

    async def history(self, session: AsyncSession, record_id: str) -> list[VersionInfo]:
        found = await session.execute(
            select(MedicalRecordVersion)
            .where(MedicalRecordVersion.record_id == record_id)
            .order_by(MedicalRecordVersion.version)
        )
        return [VersionInfo(v.version, v.changed_by, v.reason, v.counts, v.created_at) for v in found.scalars()]

    async def delete_older_than(self, session: AsyncSession, cutoff: datetime) -> int:
        """Retention: remove records (with every version) created before ``cutoff``."""
        old = select(MedicalRecord.id).where(MedicalRecord.created_at < cutoff)
        await session.execute(delete(MedicalRecordVersion).where(MedicalRecordVersion.record_id.in_(old)))
        result = await session.execute(delete(MedicalRecord).where(MedicalRecord.created_at < cutoff))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def update(
        self,
        session: AsyncSession,
        record_id: str,
        *,
        expected_version: int,
        data: dict[str, Any],
        counts: dict[str, Any],
        changed_by: str | None,
    ) -> int:
        """Write a new version if the record is still at ``expected_version``; returns the new version."""

        row = await self._row(session, record_id)
        new_version = expected_version + 1
        data_enc = self._cipher.encrypt_json(data)
        now = utcnow()
        # compare-and-set in one statement: two writers that read the same version cannot both win
        result = await session.execute(
            update(MedicalRecord)
            .where(MedicalRecord.id == record_id, MedicalRecord.version == expected_version)
            .values(version=new_version, data_enc=data_enc, counts=counts, updated_by=changed_by, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            await session.refresh(row)
            raise Conflict(
                "the medical record was changed since it was read",
                code="MEDICAL_VERSION_CONFLICT",
                details={"expected_version": expected_version, "current_version": row.version},
            )
        session.add(
            MedicalRecordVersion(
                record_id=record_id, version=new_version, data_enc=data_enc, counts=counts,
                changed_by=changed_by, reason="correction", created_at=now,
            )
        )
        await session.flush()
        return new_version


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
