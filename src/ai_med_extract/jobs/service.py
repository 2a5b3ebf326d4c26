"""The API's side of the job lifecycle: submitting a job, reading uploads, cancelling and removing.

Routes translate HTTP into these calls; the state changes themselves are the repository's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from ai_med_extract.config import JobSettings, UploadSettings
from ai_med_extract.db.base import as_utc
from ai_med_extract.db.tables import Document, Job
from ai_med_extract.errors import BadRequest, PayloadTooLarge, ServiceUnavailable, Unprocessable
from ai_med_extract.jobs.events import JobEvents
from ai_med_extract.jobs.repository import IncomingFile, JobRepository
from ai_med_extract.jobs.runner import JobRunner
from ai_med_extract.jobs.status import JobStatus

__all__ = ["IncomingFile", "JobService", "SubmittedJob", "job_view", "read_limited"]

_CHUNK = 1024 * 1024
QUEUED_COUNT_S = 1.0  # how old a count of queued jobs far below the bound may be


class Readable(Protocol):
    async def read(self, size: int = -1) -> bytes: ...


class UploadPart(Readable, Protocol):
    filename: str | None


class AuditRecorder(Protocol):
    async def record(
        self,
        *,
        action: str,
        resource_type: str | None = ...,
        resource_id: str | None = ...,
        phi_accessed: bool = ...,
        request_data: dict[str, Any] | None = ...,
        response_status: int = ...,
        access: Any = ...,
    ) -> None: ...


async def read_limited(upload: Readable, max_bytes: int) -> bytes:
    """Read an uploaded file, refusing it as soon as it passes the size limit."""
    parts: list[bytes] = []
    size = 0
    while chunk := await upload.read(_CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(
                "a file is larger than the upload limit", code="FILE_TOO_LARGE", details={"max_bytes": max_bytes}
            )
        parts.append(chunk)
    return b"".join(parts)


@dataclass(frozen=True)
class SubmittedJob:
    job_id: str
    status: str


class JobService:
    def __init__(
        self,
        repository: JobRepository,
        runner: JobRunner,
        events: JobEvents,
        settings: JobSettings,
        *,
        upload: UploadSettings | None = None,
        media_type_of: Callable[[bytes], str] | None = None,
    ):
        self.repository = repository
        self.runner = runner
        self.events = events
        self.settings = settings
        self.upload = upload or UploadSettings()
        self.media_type_of = media_type_of  # the upload-time format check (4xx with a stable code)
        self._reserved = 0  # submissions of this process between the bound check and their commit
        # The last count of queued jobs in the shared database, and this process's submissions since.
        self._queued_seen: tuple[float, int] | None = None
        self._submitted_since = 0

    # -- reading uploads ----------------------------------------------------------------------
    async def read_file(self, upload: Readable) -> bytes:
        """One uploaded file's bytes, refused (413) as soon as it passes the size limit."""
        return await read_limited(upload, self.upload.max_bytes)

    async def read_upload(self, files: Sequence[UploadPart]) -> list[IncomingFile]:
        """The files of ``POST /upload``: at most ``max_files``, none empty or too large, each with the
        media type found from its content (4xx with a stable code otherwise)."""
        if len(files) > self.upload.max_files:
            raise BadRequest(
                "too many files in one upload", code="TOO_MANY_FILES", details={"max_files": self.upload.max_files}
            )
        if self.media_type_of is None:
            raise ServiceUnavailable("text extraction is not configured", code="FORMAT_UNAVAILABLE")
        incoming: list[IncomingFile] = []
        for part in files:
            data = await self.read_file(part)
            if not data:
                raise Unprocessable("a file is empty", code="EMPTY_FILE", details={"position": len(incoming)})
            media_type = await asyncio.to_thread(self.media_type_of, data)
            incoming.append(IncomingFile(data=data, media_type=media_type, filename=part.filename))
        return incoming

    # -- submission ---------------------------------------------------------------------------
    async def submit(
        self,
        session: AsyncSession,
        audit: AuditRecorder,
        *,
        kind: str,
        created_by: str,
        tenant: str | None = None,
        action: str,
        request_data: dict[str, Any],
        files: list[IncomingFile] | None = None,
        options: dict[str, Any] | None = None,
        payload: Any = None,
        secrets: dict[str, str] | None = None,
    ) -> SubmittedJob:
        """Accept a job: check the queue bound (503 when full), write the job, its files, its
        encrypted secrets and its audit row in one transaction, commit, then dispatch it. On any
        failure nothing stays behind."""
        queued = await self._queued(session)
        if queued + self._reserved >= self.settings.queue_size:
            raise ServiceUnavailable(
                "the job queue is full; try again shortly",
                retry_after=self.settings.retry_after_s,
                code="QUEUE_FULL",
                details={"queue_size": self.settings.queue_size},
            )
        self._reserved += 1
        job = None
        try:
            job = await self.repository.create(
                session, kind=kind, created_by=created_by, tenant=tenant, files=files, options=options,
                payload=payload,
                secrets=secrets,
            )
            await audit.record(
                action=action, resource_type="job", resource_id=job.id, request_data=request_data, response_status=202
            )
            await session.commit()
            self._submitted_since += 1
        except BaseException:
            if job is not None:
                self.repository.discard_files(job.id)
            raise
        finally:
            self._reserved -= 1
        await self.runner.dispatch(job.id)
        return SubmittedJob(job_id=job.id, status=JobStatus.queued.value)

    async def _queued(self, session: AsyncSession) -> int:
        """Jobs waiting, for the bound. Far below the bound a count up to ``QUEUED_COUNT_S`` old
        (plus this process's submissions since) is good enough; near it, the database is asked."""
        now = time.monotonic()
        seen = self._queued_seen
        if seen is not None and now - seen[0] < QUEUED_COUNT_S:
            estimate = seen[1] + self._submitted_since
            if estimate + self._reserved < self.settings.queue_size - max(1, self.settings.queue_size // 10):
                return estimate
        queued = await self.repository.queued_count(session)
        self._queued_seen = (now, queued)
        self._submitted_since = 0
        return queued

    # -- cancellation and removal -------------------------------------------------------------
    async def cancel_or_delete(self, session: AsyncSession, audit: AuditRecorder, job: Job, access: Any) -> str:
        """Cancel a queued or running job (``cancelled``, from any replica); remove a finished one
        with its results (``deleted``). The audit row goes in the same transaction, which commits
        here: a job running in this process is told to stop only once the cancel request is stored."""
        job_id, previous = job.id, job.status
        if JobStatus(job.status).terminal:
            await self.repository.delete(session, job)
            self.events.forget(job_id)
            outcome = "deleted"
        else:
            await self.repository.request_cancel(session, job)
            outcome = "cancelled"
        await audit.record(
            action="job.cancel" if outcome == "cancelled" else "job.delete",
            resource_type="job",
            resource_id=job_id,
            phi_accessed=False,
            request_data={"previous_status": previous},
            access=access,
        )
        await session.commit()
        if outcome == "cancelled":
            self.events.cancel_requested(job_id)  # a job running in this process stops now
            await self.events.announce(job_id)
        return outcome

    # -- reading ------------------------------------------------------------------------------
    async def get(self, session: AsyncSession, job_id: str) -> Job:
        return await self.repository.get(session, job_id)

    def result(self, job: Job) -> dict[str, Any] | None:
        return self.repository.result(job)

    async def document(self, session: AsyncSession, document_id: str) -> tuple[Document, dict[str, Any] | None]:
        return await self.repository.document(session, document_id)

    async def expired(self, session: AsyncSession, older_than_hours: float) -> list[Job]:
        return await self.repository.expired(session, older_than_hours)

    async def delete(self, session: AsyncSession, job: Job) -> None:
        await self.repository.delete(session, job)


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
