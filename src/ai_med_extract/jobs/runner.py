"""Job runners. ``JobRunner`` is the interface; ``InProcessJobRunner`` executes jobs in this process
with a concurrency limit, a bounded queue, per-job timeouts and cancellation. A distributed runner
(a broker and separate workers) implements the same interface.

Jobs are persisted before they are queued, so a restart loses none: at start-up, queued jobs are
queued again and jobs that were running when the process died are marked failed with
``JOB_INTERRUPTED`` (their partial work is not trusted).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ai_med_extract.config import JobSettings
from ai_med_extract.db.base import utcnow
from ai_med_extract.db.models import Document, Job, JobStatus
from ai_med_extract.errors import AppError, ServiceUnavailable
from ai_med_extract.jobs.context import JobCancelled, JobContext, StoredFile
from ai_med_extract.jobs.events import JobEvents
from ai_med_extract.observability import metrics
from ai_med_extract.observability.logs import correlation_id, log_exception
from ai_med_extract.storage.cipher import Cipher
from ai_med_extract.storage.files import FileStore

logger = logging.getLogger(__name__)

class _JobTimedOut(Exception):
    pass


JobHandler = Callable[[JobContext], Awaitable[dict[str, Any]]]


class JobRunner(ABC):
    """What the API needs from a runner."""

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def stop(self) -> None: ...

    @abstractmethod
    def reserve(self) -> None:
        """Claim a queue slot before the job is written; raises 503 when the queue is full."""

    @abstractmethod
    def release(self) -> None:
        """Give back a reserved slot whose job was not created."""

    @abstractmethod
    def enqueue(self, job_id: str, secrets: dict[str, str] | None = None) -> None:
        """Queue a committed job (using a reserved slot)."""

    @abstractmethod
    async def cancel(self, job_id: str) -> bool:
        """Stop a running job; True if it was running here."""

    @abstractmethod
    def queue_depth(self) -> int: ...

    @abstractmethod
    def health(self) -> dict[str, Any]: ...


class InProcessJobRunner(JobRunner):
    def __init__(
        self,
        *,
        settings: JobSettings,
        sessionmaker: async_sessionmaker[AsyncSession],
        events: JobEvents,
        store: FileStore,
        cipher: Cipher,
        handlers: dict[str, JobHandler],
    ):
        self.settings = settings
        self._sessionmaker = sessionmaker
        self._events = events
        self._store = store
        self._cipher = cipher
        self._handlers = handlers
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._reserved = 0
        self._secrets: dict[str, dict[str, str]] = {}
        self._running: dict[str, tuple[asyncio.Task[Any], JobContext]] = {}
        self._workers: list[asyncio.Task[None]] = []
        self._executor = ThreadPoolExecutor(max_workers=settings.worker_threads, thread_name_prefix="job")
        self._stopping = False

    def register(self, kind: str, handler: JobHandler) -> None:
        self._handlers[kind] = handler

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        await self._recover()
        self._workers = [
            asyncio.create_task(self._worker(i), name=f"job-worker-{i}") for i in range(self.settings.concurrency)
        ]

    async def stop(self) -> None:
        self._stopping = True
        for task, ctx in list(self._running.values()):
            ctx.cancel()
            task.cancel()
        for worker in self._workers:
            worker.cancel()
        if self._workers:
            await asyncio.wait(self._workers, timeout=30)
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _recover(self) -> None:
        async with self._sessionmaker() as session, session.begin():
            jobs = (
                (
                    await session.execute(
                        select(Job)
                        .where(Job.status.in_([JobStatus.queued, JobStatus.running]))
                        .order_by(Job.created_at)
                    )
                )
                .scalars()
                .all()
            )
            requeue: list[str] = []
            for job in jobs:
                if job.status == JobStatus.running:
                    job.status = JobStatus.failed
                    job.error_code = "JOB_INTERRUPTED"
                    job.error_message = "the service stopped while the job was running; upload again"
                    job.finished_at = utcnow()
                    await self._events.append(
                        session, job.id, "error", {"code": job.error_code, "message": job.error_message}
                    )
                elif job.options.get("needs_secret"):
                    # A secret held only in memory (a PDF password) is gone after a restart.
                    job.status = JobStatus.failed
                    job.error_code = "JOB_INTERRUPTED"
                    job.error_message = "the service restarted before the job ran; upload again"
                    job.finished_at = utcnow()
                    await self._events.append(
                        session, job.id, "error", {"code": job.error_code, "message": job.error_message}
                    )
                else:
                    requeue.append(job.id)
        for job_id in requeue:
            self._queue.put_nowait(job_id)
        if jobs:
            logger.info("recovered jobs", extra={"requeued": len(requeue), "failed": len(jobs) - len(requeue)})
        metrics.JOB_QUEUE_DEPTH.set(self._queue.qsize())

    # -- queue ------------------------------------------------------------------------------
    def queue_depth(self) -> int:
        return self._queue.qsize()

    def reserve(self) -> None:
        if self._stopping or self._queue.qsize() + self._reserved >= self.settings.queue_size:
            raise ServiceUnavailable(
                "the job queue is full; try again shortly",
                retry_after=self.settings.retry_after_s,
                code="QUEUE_FULL",
                details={"queue_size": self.settings.queue_size},
            )
        self._reserved += 1

    def release(self) -> None:
        self._reserved = max(0, self._reserved - 1)

    def enqueue(self, job_id: str, secrets: dict[str, str] | None = None) -> None:
        self.release()
        if secrets:
            self._secrets[job_id] = secrets
        self._queue.put_nowait(job_id)
        metrics.JOB_QUEUE_DEPTH.set(self._queue.qsize())

    async def cancel(self, job_id: str) -> bool:
        entry = self._running.get(job_id)
        if entry is None:
            return False
        task, ctx = entry
        ctx.cancel()
        task.cancel()
        await asyncio.wait({task}, timeout=10)
        return True

    def health(self) -> dict[str, Any]:
        alive = sum(1 for w in self._workers if not w.done())
        return {
            "workers": alive,
            "running": len(self._running),
            "queued": self._queue.qsize(),
            "ok": alive == len(self._workers) and not self._stopping,
        }

    # -- execution --------------------------------------------------------------------------
    async def _worker(self, index: int) -> None:
        while not self._stopping:
            job_id = await self._queue.get()
            metrics.JOB_QUEUE_DEPTH.set(self._queue.qsize())
            token = correlation_id.set(job_id)
            try:
                await self._run_one(job_id)
            except asyncio.CancelledError:
                raise  # only the worker's own cancellation reaches here: never swallow it
            except Exception as exc:  # a broken job must never kill the worker, nor hang its clients
                log_exception(logger, "job runner error", exc, job_id=job_id)
                with contextlib.suppress(Exception):
                    await self._finish(
                        job_id, JobStatus.failed, "INTERNAL_ERROR", "the job failed; see the service logs"
                    )
            finally:
                correlation_id.reset(token)
                self._queue.task_done()

    async def _load_context(self, job_id: str) -> JobContext | None:
        async with self._sessionmaker() as session, session.begin():
            job = await session.get(Job, job_id)
            if job is None or job.status != JobStatus.queued:
                return None
            documents = (
                (await session.execute(select(Document).where(Document.job_id == job_id).order_by(Document.position)))
                .scalars()
                .all()
            )
            files = [
                StoredFile(
                    document_id=d.id,
                    position=d.position,
                    media_type=d.media_type,
                    size=d.size_bytes,
                    sha256=d.sha256,
                    storage_key=d.storage_key,
                    store=self._store,
                    options=dict(job.options),
                    filename=self._cipher.decrypt(d.filename_enc).decode() if d.filename_enc else None,
                )
                for d in documents
            ]
            payload = self._cipher.decrypt_json(job.input_enc) if job.input_enc else None
            job.status = JobStatus.running
            job.started_at = utcnow()
            job.stage = "starting"
            kind, options = job.kind, dict(job.options)

        async def emit(event: str, data: dict[str, Any]) -> None:
            fields: dict[str, Any] = {}
            if event == "progress":
                fields = {"stage": data["stage"], "progress": data["percent"], "message": data["message"]}
            await self._events.publish(job_id, event, data, **fields)

        async def save_document(document_id: str, result: dict[str, Any]) -> None:
            async with self._sessionmaker() as session, session.begin():
                doc = await session.get(Document, document_id)
                if doc is not None and doc.job_id == job_id:
                    doc.result_enc = self._cipher.encrypt_json(result)
                    doc.status = "processed"

        return JobContext(
            job_id=job_id,
            kind=kind,
            options=options,
            files=files,
            payload=payload,
            executor=self._executor,
            loop=asyncio.get_running_loop(),
            emit=emit,
            save_document=save_document,
            secrets=self._secrets.pop(job_id, None),
        )

    async def _run_one(self, job_id: str) -> None:
        ctx = await self._load_context(job_id)
        if ctx is None:
            return  # cancelled or deleted while queued
        handler = self._handlers.get(ctx.kind)
        started = time.perf_counter()
        await self._events.publish(job_id, "progress", {"stage": "starting", "percent": 0.0, "message": "started"})
        task = asyncio.create_task(self._invoke(handler, ctx))
        self._running[job_id] = (task, ctx)
        try:
            # asyncio.wait (unlike wait_for on 3.11) never swallows a cancellation of this worker.
            done, _ = await asyncio.wait({task}, timeout=self.settings.timeout_s)
            if not done:
                ctx.cancel()
                task.cancel()
                raise _JobTimedOut
            result = task.result()
        except _JobTimedOut:
            await self._finish(job_id, JobStatus.failed, "JOB_TIMEOUT", f"job exceeded {self.settings.timeout_s:g} s")
        except (asyncio.CancelledError, JobCancelled) as exc:
            current = asyncio.current_task()
            own = isinstance(exc, asyncio.CancelledError) and current is not None and current.cancelling() > 0
            if self._stopping or own:
                # The worker itself is being stopped: the job did not finish, say so.
                ctx.cancel()
                task.cancel()
                await asyncio.shield(
                    self._finish(
                        job_id,
                        JobStatus.failed,
                        "JOB_INTERRUPTED",
                        "the service stopped while the job was running; upload again",
                    )
                )
                if own:
                    raise
                return
            await self._finish(job_id, JobStatus.cancelled, "JOB_CANCELLED", "job was cancelled")
        except AppError as exc:
            await self._finish(job_id, JobStatus.failed, exc.code, exc.message, details=exc.details)
        except Exception as exc:
            log_exception(logger, "job failed", exc, job_id=job_id, kind=ctx.kind)
            await self._finish(job_id, JobStatus.failed, "INTERNAL_ERROR", "the job failed; see the service logs")
        else:
            await self._finish(job_id, JobStatus.completed, result=result)
        finally:
            self._running.pop(job_id, None)
            metrics.JOB_DURATION.labels(ctx.kind).observe(time.perf_counter() - started)

    async def _invoke(self, handler: JobHandler | None, ctx: JobContext) -> dict[str, Any]:
        if handler is None:
            raise AppError("no handler for this job kind", code="JOB_KIND_UNKNOWN")
        return await handler(ctx)

    async def _finish(
        self,
        job_id: str,
        status: JobStatus,
        code: str | None = None,
        message: str | None = None,
        *,
        result: dict[str, Any] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        async with self._events.writer_lock(job_id), self._sessionmaker() as session, session.begin():
            job = await session.get(Job, job_id)
            if job is None or JobStatus(job.status).terminal:
                return  # deleted meanwhile, or already ended (never overwrite an outcome)
            kind = job.kind
            job.status = status
            job.finished_at = utcnow()
            if status == JobStatus.completed:
                job.progress = 100.0
                job.stage = "done"
                job.message = "completed"
                job.result_enc = self._cipher.encrypt_json(result or {})
                job.result_summary = summarize_result(result or {})
                await self._events.append(session, job_id, "complete", {"status": "completed", "job_id": job_id})
            else:
                job.error_code = code
                job.error_message = (message or "")[:500]
                await self._events.append(
                    session, job_id, "error", {"code": code, "message": job.error_message, "details": details or {}}
                )
        await self._events.announce(job_id)
        self._events.forget_writer(job_id)
        metrics.JOBS_FINISHED.labels(kind, status.value).inc()
        logger.info("job finished", extra={"job_id": job_id, "status": status.value, "error_code": code})


def summarize_result(result: dict[str, Any]) -> dict[str, Any]:
    """Counts only: what a listing or a metric may show without decrypting the result."""
    documents = result.get("documents") or []
    return {
        "documents": len(documents),
        "characters": sum(len(d.get("text") or "") for d in documents if isinstance(d, dict)),
    }
