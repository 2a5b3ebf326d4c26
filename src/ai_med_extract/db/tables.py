"""Tables of the service backbone: API keys, jobs, job events, documents and the audit log.

Columns ending in ``_enc`` hold Fernet ciphertext (see ``storage.cipher``): anything that may carry
patient data (results, event payloads, file names) is encrypted before it reaches the database.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ai_med_extract.db.base import Base, BigIntPK, IPAddress, JSONType, UTCDateTime, utcnow


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # Which hashing key made key_hash (security/keyring.py); empty: the master secret (before key ids).
    key_id: Mapped[str | None] = mapped_column(String(24), nullable=True)
    role: Mapped[str] = mapped_column(String(20))
    # Optional organisation: keys of one tenant never see another tenant's resources.
    tenant: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class KeyVersion(Base):
    """The current version of each purpose's derived key (``ai-med-extract keys rotate`` bumps it)."""

    __tablename__ = "key_versions"

    purpose: Mapped[str] = mapped_column(String(32), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    key_id: Mapped[str] = mapped_column(String(24))
    rotated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), default="upload")
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)  # a jobs.status.JobStatus
    stage: Mapped[str | None] = mapped_column(String(64), nullable=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str | None] = mapped_column(String(500), nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_message: Mapped[str | None] = mapped_column(String(500), nullable=True)
    created_by: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    tenant: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Non-PHI options (flags, operator names, model names); passwords never stored here.
    options: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    input_enc: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    result_enc: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    # Counts and sizes only: safe to show in listings and metrics.
    result_summary: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The lease: which worker runs the job and until when it must renew (see jobs/repository.py).
    lease_owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Secrets the job needs (a PDF password), encrypted; removed when the job ends.
    secrets_enc: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)

    documents: Mapped[list[Document]] = relationship(
        back_populates="job", cascade="all, delete-orphan", order_by="Document.position"
    )


class JobEvent(Base):
    __tablename__ = "job_events"
    __table_args__ = (
        UniqueConstraint("job_id", "seq", name="job_seq"),
        UniqueConstraint("job_id", "key", name="job_event_key"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    event: Mapped[str] = mapped_column(String(16))  # progress | token | complete | error
    data_enc: Mapped[bytes] = mapped_column(LargeBinary)
    # Idempotency key: a retried job writing the same event again writes nothing.
    key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Document(Base):
    __tablename__ = "documents"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    filename_enc: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    media_type: Mapped[str | None] = mapped_column(String(100), nullable=True)
    size_bytes: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    result_enc: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    job: Mapped[Job] = relationship(back_populates="documents")


class AuditLog(Base):
    """HIPAA audit trail. Append-only; each row's ``row_hash`` chains to the previous row's."""

    __tablename__ = "audit_logs"
    __table_args__ = (
        Index("idx_audit_timestamp", "timestamp"),
        Index("idx_audit_user", "user_id"),
        Index("idx_audit_action", "action"),
        Index("idx_audit_phi", "phi_accessed"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    user_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    action: Mapped[str] = mapped_column(String(100))
    resource_type: Mapped[str | None] = mapped_column(String(100), nullable=True)
    resource_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    phi_accessed: Mapped[bool] = mapped_column(Boolean, default=False)
    ip_address: Mapped[str | None] = mapped_column(IPAddress, nullable=True)
    user_agent: Mapped[str | None] = mapped_column(Text, nullable=True)
    request_data: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    response_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    prev_hash: Mapped[str] = mapped_column(String(64))
    row_hash: Mapped[str] = mapped_column(String(64))
    # Which chain key signed row_hash (security/keyring.py); empty: the master secret (before key ids).
    key_id: Mapped[str | None] = mapped_column(String(24), nullable=True)
