"""Creating, reading and removing jobs (the API's side of the job lifecycle)."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from ai_med_extract.db.base import as_utc, utcnow
from ai_med_extract.db.models import Document, Job, JobStatus
from ai_med_extract.errors import NotFound
from ai_med_extract.storage.cipher import Cipher
from ai_med_extract.storage.files import FileStore


@dataclass(frozen=True)
class IncomingFile:
    data: bytes
    media_type: str
    filename: str | None


class JobService:
    def __init__(self, store: FileStore, cipher: Cipher):
        self.store = store
        self.cipher = cipher

    async def create(
        self,
        session: AsyncSession,
        *,
        kind: str,
        created_by: str,
        tenant: str | None = None,
        files: list[IncomingFile] = (),  # type: ignore[assignment]
        options: dict[str, Any] | None = None,
        payload: Any = None,
    ) -> Job:
        """Write the job, its documents and their encrypted files. The caller commits; on failure
        ``discard_files`` removes what was written."""
        job_id = str(uuid.uuid4())
        job = Job(
            id=job_id,
            kind=kind,
            status=JobStatus.queued,
            progress=0.0,
            stage="queued",
            message="waiting for a worker",
            created_by=created_by,
            tenant=tenant,
            options=options or {},
            input_enc=self.cipher.encrypt_json(payload) if payload is not None else None,
        )
        session.add(job)
        await session.flush()
        for position, incoming in enumerate(files):
            document_id = str(uuid.uuid4())
            key = f"jobs/{job_id}/{document_id}"
            self.store.put(key, incoming.data)
            session.add(
                Document(
                    id=document_id,
                    job_id=job_id,
                    position=position,
                    filename_enc=self.cipher.encrypt(incoming.filename.encode()) if incoming.filename else None,
                    media_type=incoming.media_type,
                    size_bytes=len(incoming.data),
                    sha256=hashlib.sha256(incoming.data).hexdigest(),
                    storage_key=key,
                    status="pending",
                )
            )
        await session.flush()
        return job

    def discard_files(self, job_id: str) -> None:
        self.store.delete_prefix(f"jobs/{job_id}")

    async def get(self, session: AsyncSession, job_id: str) -> Job:
        job = await session.get(Job, job_id) if _is_uuid(job_id) else None
        if job is None:
            raise NotFound("no such job", code="JOB_NOT_FOUND", details={"job_id": job_id[:64]})
        return job

    async def delete(self, session: AsyncSession, job: Job) -> None:
        """Remove a job with its documents, results, events and stored files."""
        job_id = job.id
        await session.execute(delete(Document).where(Document.job_id == job_id))
        await session.delete(job)
        await session.flush()
        self.store.delete_prefix(f"jobs/{job_id}")

    def result(self, job: Job) -> dict[str, Any] | None:
        return self.cipher.decrypt_json(job.result_enc) if job.result_enc else None

    async def document(self, session: AsyncSession, document_id: str) -> tuple[Document, dict[str, Any] | None]:
        doc = await session.get(Document, document_id) if _is_uuid(document_id) else None
        if doc is None:
            raise NotFound("no such document", code="DOCUMENT_NOT_FOUND", details={"document_id": document_id[:64]})
        return doc, (self.cipher.decrypt_json(doc.result_enc) if doc.result_enc else None)

    async def expired(self, session: AsyncSession, older_than_hours: float) -> list[Job]:
        from datetime import timedelta

        cutoff = utcnow() - timedelta(hours=older_than_hours)
        jobs = (await session.execute(select(Job).where(Job.created_at < cutoff))).scalars().all()
        return [j for j in jobs if JobStatus(j.status).terminal and as_utc(j.created_at) < cutoff]


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def job_view(job: Job, result: dict[str, Any] | None = None) -> dict[str, Any]:
    """The public shape of a job (GET /job/{id})."""
    view: dict[str, Any] = {
        "job_id": job.id,
        "kind": job.kind,
        "status": job.status,
        "stage": job.stage,
        "progress": job.progress,
        "message": job.message,
        "created_at": as_utc(job.created_at).isoformat(),
        "started_at": as_utc(job.started_at).isoformat() if job.started_at else None,
        "finished_at": as_utc(job.finished_at).isoformat() if job.finished_at else None,
        "error": {"code": job.error_code, "message": job.error_message} if job.error_code else None,
        "summary": job.result_summary,
    }
    if result is not None:
        view["result"] = result
    return view
