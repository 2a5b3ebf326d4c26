"""The one owner of job state: every write of Job, Document and JobEvent rows and every status change.

The state machine::

    queued  --claim-->          running --finish-->  completed | failed | cancelled
    queued  --cancel-->         cancelled
    running --cancel-->         running with cancel_requested (the worker ends it as cancelled)
    running --lease expired-->  queued (attempts left) | failed JOB_ATTEMPTS_EXHAUSTED
    running --release-->        queued (its worker is stopping)

A worker *claims* a job with one conditional UPDATE (queued, or running with an expired lease, and
attempts left): of two workers claiming at once exactly one matches the row, so a job never runs on
two workers at once. The holder renews its lease while the job runs (``heartbeat``); a worker that
dies stops renewing and ``recover_expired`` hands the job to another one. Writes of a running job
name their owner and change nothing once the lease has moved on.

Writes are idempotent so that a retried job duplicates nothing: documents are created with the job
and only updated by workers; every event carries a key (``progress:3``, ``end``) unique per job, and
an event whose key exists is not written again.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ai_med_extract.db.base import as_utc, utcnow
from ai_med_extract.db.tables import Document, Job, JobEvent
from ai_med_extract.errors import NotFound
from ai_med_extract.jobs.status import JobStatus
from ai_med_extract.observability import metrics
from ai_med_extract.storage.cipher import Cipher
from ai_med_extract.storage.files import FileStore

EVENTS_CHANNEL = "ame_job_events"  # payload: job id; a new event or a status change
CANCEL_CHANNEL = "ame_job_cancel"  # payload: job id; a cancel was requested


@dataclass(frozen=True)
class IncomingFile:
    data: bytes
    media_type: str
    filename: str | None


@dataclass(frozen=True)
class ClaimedDocument:
    document_id: str
    position: int
    media_type: str | None
    size: int
    sha256: str
    storage_key: str
    filename: str | None


@dataclass(frozen=True)
class ClaimedJob:
    """What a worker got with its lease: the job's inputs, decrypted."""

    job_id: str
    kind: str
    options: dict[str, Any]
    attempt: int
    documents: list[ClaimedDocument]
    payload: Any
    secrets: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Lease:
    owned: bool
    cancel_requested: bool


@dataclass(frozen=True)
class Fleet:
    by_status: dict[str, int]
    by_worker: dict[str, int]
    leases_expired: int
    retried: int


@dataclass(frozen=True)
class Recovery:
    requeued: list[str]
    ended: list[str]


class JobRepository:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], cipher: Cipher, store: FileStore):
        self._sessionmaker = sessionmaker
        self.cipher = cipher
        self.store = store
        # One writer at a time per job in this process: sequence numbers are max + 1.
        self._writers: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    # -- creation (API side) ----------------------------------------------------------------
    async def create(
        self,
        session: AsyncSession,
        *,
        kind: str,
        created_by: str,
        tenant: str | None = None,
        files: list[IncomingFile] | None = None,
        options: dict[str, Any] | None = None,
        payload: Any = None,
        secrets: dict[str, str] | None = None,
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
            secrets_enc=self.cipher.encrypt_json(secrets) if secrets else None,
            attempts=0,
            cancel_requested=False,
        )
        session.add(job)
        await session.flush()
        for position, incoming in enumerate(files or []):
            document_id = str(uuid.uuid4())
            key = f"jobs/{job_id}/{document_id}"
            # Encrypting and fsyncing take milliseconds: off the event loop, which serves every request.
            await asyncio.to_thread(self.store.put, key, incoming.data)
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

    async def queued_count(self, session: AsyncSession) -> int:
        """Jobs waiting for a worker, in the shared database: the queue bound of every replica."""
        return int(
            (await session.execute(select(func.count()).select_from(Job).where(Job.status == JobStatus.queued)))
            .scalar_one()
        )

    async def queued_ids(self) -> list[str]:
        async with self._sessionmaker() as session:
            rows = await session.execute(
                select(Job.id).where(Job.status == JobStatus.queued).order_by(Job.created_at)
            )
            return [row[0] for row in rows]

    # -- reading -----------------------------------------------------------------------------
    async def get(self, session: AsyncSession, job_id: str) -> Job:
        job = await session.get(Job, job_id) if _is_uuid(job_id) else None
        if job is None:
            raise NotFound("no such job", code="JOB_NOT_FOUND", details={"job_id": job_id[:64]})
        return job

    def result(self, job: Job) -> dict[str, Any] | None:
        return self.cipher.decrypt_json(job.result_enc) if job.result_enc else None

    async def document(self, session: AsyncSession, document_id: str) -> tuple[Document, dict[str, Any] | None]:
        doc = await session.get(Document, document_id) if _is_uuid(document_id) else None
        if doc is None:
            raise NotFound("no such document", code="DOCUMENT_NOT_FOUND", details={"document_id": document_id[:64]})
        return doc, (self.cipher.decrypt_json(doc.result_enc) if doc.result_enc else None)

    async def expired(self, session: AsyncSession, older_than_hours: float) -> list[Job]:
        cutoff = utcnow() - timedelta(hours=older_than_hours)
        jobs = (await session.execute(select(Job).where(Job.created_at < cutoff))).scalars().all()
        return [j for j in jobs if JobStatus(j.status).terminal and as_utc(j.created_at) < cutoff]

    async def fleet(self) -> Fleet:
        """Counts for metrics: jobs by status, running jobs by worker, expired leases, retried jobs."""
        now = utcnow()
        async with self._sessionmaker() as session:
            by_status = (await session.execute(select(Job.status, func.count()).group_by(Job.status))).all()
            by_worker = (
                await session.execute(
                    select(Job.lease_owner, func.count())
                    .where(Job.status == JobStatus.running, Job.lease_owner.is_not(None))
                    .group_by(Job.lease_owner)
                )
            ).all()
            expired = (
                await session.execute(
                    select(func.count()).select_from(Job).where(
                        Job.status == JobStatus.running, Job.lease_expires_at < now
                    )
                )
            ).scalar_one()
            retried = (
                await session.execute(select(func.count()).select_from(Job).where(Job.attempts > 1))
            ).scalar_one()
        return Fleet(
            by_status={status: int(count) for status, count in by_status},
            by_worker={str(worker): int(count) for worker, count in by_worker},
            leases_expired=int(expired),
            retried=int(retried),
        )

    # -- removal -----------------------------------------------------------------------------
    async def delete(self, session: AsyncSession, job: Job) -> None:
        """Remove a job with its documents, results, events and stored files."""
        job_id = job.id
        await session.execute(delete(Document).where(Document.job_id == job_id))
        await session.delete(job)
        await session.flush()
        self.store.delete_prefix(f"jobs/{job_id}")
        self._writers.pop(job_id, None)

    # -- cancellation (API side) -------------------------------------------------------------
    async def request_cancel(self, session: AsyncSession, job: Job) -> bool:
        """Cancel a queued job at once (True); flag a running one for its worker, which ends it
        as cancelled (False). The caller commits; the flag reaches the worker by its heartbeat and
        by a notification."""
        if job.status == JobStatus.queued:
            job.status = JobStatus.cancelled
            job.error_code = "JOB_CANCELLED"
            job.error_message = "job was cancelled"
            job.finished_at = utcnow()
            job.secrets_enc = None
            await self.append_event(
                session, job.id, "error", {"code": "JOB_CANCELLED", "message": "job was cancelled"}, key="end"
            )
            return True
        job.cancel_requested = True
        await session.flush()
        await self._notify(session, CANCEL_CHANNEL, job.id)
        return False

    # -- leases (worker side) ----------------------------------------------------------------
    async def claim(self, job_id: str, owner: str, *, lease_s: float, max_attempts: int) -> ClaimedJob | None:
        """Take the job for ``owner`` if nobody holds it; None when it is taken, ended or gone."""
        now = utcnow()
        async with self._sessionmaker() as session, session.begin():
            claimed = await session.execute(
                update(Job)
                .where(
                    Job.id == job_id,
                    Job.attempts < max_attempts,
                    Job.cancel_requested.is_(False),
                    or_(
                        Job.status == JobStatus.queued,
                        and_(Job.status == JobStatus.running, Job.lease_expires_at < now),
                    ),
                )
                .values(
                    status=JobStatus.running,
                    lease_owner=owner,
                    lease_expires_at=now + timedelta(seconds=lease_s),
                    attempts=Job.attempts + 1,
                    started_at=func.coalesce(Job.started_at, now),
                    stage="starting",
                    updated_at=now,
                )
                .execution_options(synchronize_session=False)
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                return None
            job = (await session.execute(select(Job).where(Job.id == job_id))).scalar_one()
            documents = (
                (await session.execute(select(Document).where(Document.job_id == job_id).order_by(Document.position)))
                .scalars()
                .all()
            )
            return ClaimedJob(
                job_id=job_id,
                kind=job.kind,
                options=dict(job.options or {}),
                attempt=job.attempts,
                documents=[
                    ClaimedDocument(
                        document_id=d.id,
                        position=d.position,
                        media_type=d.media_type,
                        size=d.size_bytes,
                        sha256=d.sha256,
                        storage_key=d.storage_key,
                        filename=self.cipher.decrypt(d.filename_enc).decode() if d.filename_enc else None,
                    )
                    for d in documents
                ],
                payload=self.cipher.decrypt_json(job.input_enc) if job.input_enc else None,
                secrets=self.cipher.decrypt_json(job.secrets_enc) if job.secrets_enc else {},
            )

    async def heartbeat(self, job_id: str, owner: str, *, lease_s: float) -> Lease:
        """Renew the lease; say whether ``owner`` still holds it and whether a cancel was asked."""
        now = utcnow()
        async with self._sessionmaker() as session, session.begin():
            renewed = await session.execute(
                update(Job)
                .where(Job.id == job_id, Job.lease_owner == owner, Job.status == JobStatus.running)
                .values(lease_expires_at=now + timedelta(seconds=lease_s))
                .execution_options(synchronize_session=False)
            )
            cancel = (await session.execute(select(Job.cancel_requested).where(Job.id == job_id))).scalar()
        return Lease(owned=renewed.rowcount == 1, cancel_requested=bool(cancel))  # type: ignore[attr-defined]

    async def release(self, job_id: str, owner: str) -> bool:
        """Give a running job back to the queue (its worker is stopping); the attempt still counts."""
        async with self._sessionmaker() as session, session.begin():
            released = await session.execute(
                update(Job)
                .where(Job.id == job_id, Job.lease_owner == owner, Job.status == JobStatus.running)
                .values(status=JobStatus.queued, lease_owner=None, lease_expires_at=None, stage="queued",
                        message="waiting for a worker")
                .execution_options(synchronize_session=False)
            )
            done = released.rowcount == 1  # type: ignore[attr-defined]
            if done:
                await self._notify(session, EVENTS_CHANNEL, job_id)
        return done

    async def recover_expired(self, *, max_attempts: int) -> Recovery:
        """Jobs whose worker stopped renewing its lease: queue them again while attempts are left,
        else fail them with a reason. Jobs with a live lease are never touched."""
        now = utcnow()
        requeued: list[str] = []
        ended: list[str] = []
        async with self._sessionmaker() as session, session.begin():
            query = select(Job).where(Job.status == JobStatus.running, Job.lease_expires_at < now)
            if session.get_bind().dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            for job in (await session.execute(query)).scalars().all():
                metrics.JOB_LEASE_EXPIRIES.inc()
                if job.cancel_requested:
                    await self._end(session, job, JobStatus.cancelled, "JOB_CANCELLED", "job was cancelled")
                    ended.append(job.id)
                elif job.attempts >= max_attempts:
                    await self._end(
                        session,
                        job,
                        JobStatus.failed,
                        "JOB_ATTEMPTS_EXHAUSTED",
                        f"the job's worker stopped {job.attempts} time(s) while running it; upload again",
                    )
                    ended.append(job.id)
                else:
                    job.status = JobStatus.queued
                    job.lease_owner = None
                    job.lease_expires_at = None
                    job.stage = "queued"
                    job.message = "waiting for a worker (retry)"
                    metrics.JOB_RETRIES.inc()
                    requeued.append(job.id)
                    await self._notify(session, EVENTS_CHANNEL, job.id)
        return Recovery(requeued=requeued, ended=ended)

    # -- results and events (worker side) ----------------------------------------------------
    async def save_document(self, job_id: str, owner: str | None, document_id: str, result: dict[str, Any]) -> bool:
        """Store one document's result (an overwrite: writing it twice leaves one result)."""
        async with self._sessionmaker() as session, session.begin():
            if owner is not None and not await self._holds(session, job_id, owner):
                return False
            doc = await session.get(Document, document_id)
            if doc is None or doc.job_id != job_id:
                return False
            doc.result_enc = self.cipher.encrypt_json(result)
            doc.status = "processed"
        return True

    async def append_event(
        self, session: AsyncSession, job_id: str, event: str, data: dict[str, Any], *, key: str | None = None
    ) -> int | None:
        """Add an event inside the caller's transaction (None when its key was written before)."""
        if key is not None:
            seen = (
                await session.execute(select(JobEvent.seq).where(JobEvent.job_id == job_id, JobEvent.key == key))
            ).scalar()
            if seen is not None:
                return None
        last = (
            await session.execute(select(func.max(JobEvent.seq)).where(JobEvent.job_id == job_id))
        ).scalar_one_or_none()
        seq = (last or 0) + 1
        session.add(
            JobEvent(job_id=job_id, seq=seq, event=event, key=key, data_enc=self.cipher.encrypt_json(data))
        )
        await session.flush()
        await self._notify(session, EVENTS_CHANNEL, job_id)
        return seq

    async def publish(
        self,
        job_id: str,
        event: str,
        data: dict[str, Any],
        *,
        key: str | None = None,
        owner: str | None = None,
        **job_fields: Any,
    ) -> int | None:
        """Append an event (and update job columns) in its own transaction. Safe to call
        concurrently for one job (progress and streamed tokens at once)."""
        async with self._writers[job_id], self._sessionmaker() as session, session.begin():
            if owner is not None and not await self._holds(session, job_id, owner):
                return None
            seq = await self.append_event(session, job_id, event, data, key=key)
            if job_fields and seq is not None:
                await session.execute(
                    update(Job).where(Job.id == job_id).values(**job_fields).execution_options(
                        synchronize_session=False
                    )
                )
        return seq

    async def finish(
        self,
        job_id: str,
        status: JobStatus,
        code: str | None = None,
        message: str | None = None,
        *,
        owner: str | None = None,
        result: dict[str, Any] | None = None,
        details: dict[str, Any] | None = None,
    ) -> str | None:
        """End a job (never overwriting an outcome, never for a worker that lost its lease);
        return its kind when this call ended it."""
        async with self._writers[job_id], self._sessionmaker() as session, session.begin():
            query = select(Job).where(Job.id == job_id)
            if session.get_bind().dialect.name == "postgresql":
                query = query.with_for_update()
            job = (await session.execute(query)).scalar_one_or_none()
            if job is None or JobStatus(job.status).terminal:
                return None
            if owner is not None and job.lease_owner != owner:
                return None
            if status == JobStatus.completed:
                job.progress = 100.0
                job.stage = "done"
                job.message = "completed"
                job.result_enc = self.cipher.encrypt_json(result or {})
                job.result_summary = summarize_result(result or {})
                job.status = status
                job.finished_at = utcnow()
                job.lease_expires_at = None  # lease_owner stays: who ran the job
                job.secrets_enc = None
                await self.append_event(
                    session, job_id, "complete", {"status": "completed", "job_id": job_id}, key="end"
                )
            else:
                await self._end(session, job, status, code or "INTERNAL_ERROR", message or "", details)
            kind = job.kind
        self._writers.pop(job_id, None)
        return kind

    # -- internals ---------------------------------------------------------------------------
    async def _end(
        self,
        session: AsyncSession,
        job: Job,
        status: JobStatus,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        job.status = status
        job.finished_at = utcnow()
        job.error_code = code
        job.error_message = message[:500]
        job.lease_expires_at = None  # lease_owner stays: who ran the job
        job.secrets_enc = None
        await self.append_event(
            session, job.id, "error", {"code": code, "message": job.error_message, "details": details or {}}, key="end"
        )

    async def _holds(self, session: AsyncSession, job_id: str, owner: str) -> bool:
        holder = (await session.execute(select(Job.lease_owner).where(Job.id == job_id))).scalar()
        return holder == owner

    @staticmethod
    async def _notify(session: AsyncSession, channel: str, job_id: str) -> None:
        """Tell listening processes (delivered by PostgreSQL when the transaction commits)."""
        if session.get_bind().dialect.name == "postgresql":
            await session.execute(text("SELECT pg_notify(:channel, :payload)"), {"channel": channel, "payload": job_id})


def summarize_result(result: dict[str, Any]) -> dict[str, Any]:
    """Counts only: what a listing or a metric may show without decrypting the result."""
    documents = result.get("documents") or []
    return {
        "documents": len(documents),
        "characters": sum(len(d.get("text") or "") for d in documents if isinstance(d, dict)),
    }


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
