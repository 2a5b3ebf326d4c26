"""Running one job: claim its lease, run its handler with a heartbeat, write its outcome.

The same executor runs jobs in the embedded runner (inside ``serve``) and in ``ai-med-extract
worker`` processes fed by the task engine. The engine only says "run job X"; the lease in the
database decides who runs it, so a delivery twice, or to two workers, runs the job once.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ai_med_extract.config import JobSettings
from ai_med_extract.errors import AppError
from ai_med_extract.jobs.context import JobCancelled, JobContext, StoredFile
from ai_med_extract.jobs.events import JobEvents
from ai_med_extract.jobs.repository import ClaimedJob, JobRepository
from ai_med_extract.jobs.status import JobStatus
from ai_med_extract.observability import metrics
from ai_med_extract.observability.logs import correlation_id, log_exception

logger = logging.getLogger(__name__)

JobHandler = Callable[[JobContext], Awaitable[dict[str, Any]]]

# Made up for the warm-up run; no real person.
WARM_UP_NOTE = b"Follow-up visit. Blood pressure 128/82. Continue lisinopril 10 mg daily. Seen by Dr. Test.\n"


def worker_name(role: str) -> str:
    """A lease owner name unique to this process: host, pid and a random suffix."""
    return f"{role}:{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class _Ended(Exception):
    """Why a running job stopped before its handler returned."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason  # timeout | cancelled | lease_lost | stopping


class JobExecutor:
    def __init__(
        self,
        *,
        settings: JobSettings,
        repository: JobRepository,
        events: JobEvents,
        handlers: dict[str, JobHandler],
        owner: str,
    ):
        self.settings = settings
        self.repository = repository
        self.events = events
        self.handlers = handlers
        self.owner = owner
        self.pool = ThreadPoolExecutor(max_workers=settings.worker_threads, thread_name_prefix="job")
        self._running: dict[str, tuple[asyncio.Task[Any], JobContext]] = {}
        self._reasons: dict[str, str] = {}
        self._ends: dict[str, asyncio.Event] = {}  # set when a claimed job's outcome is written
        self.stopping = False
        events.on_cancel(self._cancel_notified)

    @property
    def running(self) -> int:
        return len(self._running)

    def _cancel_notified(self, job_id: str) -> None:
        entry = self._running.get(job_id)
        if entry is not None:
            self._stop(job_id, "cancelled")

    def _stop(self, job_id: str, reason: str) -> None:
        entry = self._running.get(job_id)
        if entry is None:
            return
        task, ctx = entry
        self._reasons.setdefault(job_id, reason)
        ctx.cancel()
        task.cancel()

    async def stop(self) -> None:
        """Hand every running job back to the queue; another worker (or the next start) runs it."""
        self.stopping = True
        ends = [event.wait() for event in self._ends.values()]
        for job_id in list(self._running):
            self._stop(job_id, "stopping")
        if ends:
            await asyncio.wait([asyncio.ensure_future(end) for end in ends], timeout=30)
        self.pool.shutdown(wait=False, cancel_futures=True)

    async def warm_up(self) -> None:
        """Run the upload pipeline once on a made-up note, outside any job, so that the models load
        before this worker takes a lease (loading them can stall a busy process for seconds)."""
        handler = self.handlers.get("upload")
        if handler is None:
            return
        key = f"warm-up/{uuid.uuid4().hex}"
        store = self.repository.store
        store.put(key, WARM_UP_NOTE)
        options = {"scrub": True, "extract": True}

        async def discard(*_: Any) -> None:
            return None

        ctx = JobContext(
            job_id="warm-up",
            kind="upload",
            options=options,
            files=[
                StoredFile(
                    document_id="warm-up",
                    position=0,
                    media_type="text/plain",
                    size=len(WARM_UP_NOTE),
                    sha256=hashlib.sha256(WARM_UP_NOTE).hexdigest(),
                    storage_key=key,
                    store=store,
                    options=options,
                )
            ],
            payload=None,
            executor=self.pool,
            loop=asyncio.get_running_loop(),
            emit=discard,
            save_document=discard,
        )
        started = time.perf_counter()
        try:
            await handler(ctx)
        except Exception as exc:  # a broken warm-up only means slower first jobs
            log_exception(logger, "worker warm-up failed", exc)
        finally:
            store.delete_prefix(key)
        logger.info("worker warmed up", extra={"seconds": round(time.perf_counter() - started, 1)})

    # -- one job ------------------------------------------------------------------------------
    async def run(self, job_id: str) -> None:
        """Run the job if its lease can be had; return quietly when another worker has it."""
        if self.stopping:
            return
        claimed = await self.repository.claim(
            job_id, self.owner, lease_s=self.settings.lease_s, max_attempts=self.settings.max_attempts
        )
        if claimed is None:
            return
        token = correlation_id.set(job_id)
        metrics.JOBS_ACTIVE.labels(self.owner).inc()
        self._ends[job_id] = asyncio.Event()
        try:
            await self._run_claimed(claimed)
        except Exception as exc:  # a broken job must never kill the worker, nor hang its clients
            log_exception(logger, "job runner error", exc, job_id=job_id)
            await self._finish(job_id, claimed.kind, JobStatus.failed, "INTERNAL_ERROR", "the job failed; see the service logs")
        finally:
            self._ends.pop(job_id).set()
            metrics.JOBS_ACTIVE.labels(self.owner).dec()
            correlation_id.reset(token)

    def _context(self, claimed: ClaimedJob) -> JobContext:
        job_id = claimed.job_id
        counters: Counter[str] = Counter()

        async def emit(event: str, data: dict[str, Any]) -> None:
            counters[event] += 1
            key = f"{event}:{counters[event]}"  # the same event of a retried attempt is not written twice
            fields: dict[str, Any] = {}
            if event == "progress":
                fields = {"stage": data["stage"], "progress": data["percent"], "message": data["message"]}
            await self.repository.publish(job_id, event, data, key=key, owner=self.owner, **fields)
            await self.events.announce(job_id)

        async def save_document(document_id: str, result: dict[str, Any]) -> None:
            await self.repository.save_document(job_id, self.owner, document_id, result)

        files = [
            StoredFile(
                document_id=d.document_id,
                position=d.position,
                media_type=d.media_type,
                size=d.size,
                sha256=d.sha256,
                storage_key=d.storage_key,
                store=self.repository.store,
                options=dict(claimed.options),
                filename=d.filename,
            )
            for d in claimed.documents
        ]
        return JobContext(
            job_id=job_id,
            kind=claimed.kind,
            options=claimed.options,
            files=files,
            payload=claimed.payload,
            executor=self.pool,
            loop=asyncio.get_running_loop(),
            emit=emit,
            save_document=save_document,
            secrets=claimed.secrets,
        )

    async def _run_claimed(self, claimed: ClaimedJob) -> None:
        job_id = claimed.job_id
        ctx = self._context(claimed)
        handler = self.handlers.get(claimed.kind)
        started = time.perf_counter()
        await ctx.progress("starting", 0.0, "started" if claimed.attempt == 1 else f"started (attempt {claimed.attempt})")
        task = asyncio.create_task(self._invoke(handler, ctx))
        self._running[job_id] = (task, ctx)
        heartbeat = asyncio.create_task(self._heartbeat(job_id))
        try:
            # asyncio.wait (unlike wait_for on 3.11) never swallows a cancellation of this worker.
            done, _ = await asyncio.wait({task}, timeout=self.settings.timeout_s)
            if not done:
                self._stop(job_id, "timeout")
                await asyncio.wait({task}, timeout=10)
            reason = self._reasons.get(job_id)
            if reason is not None:
                raise _Ended(reason)
            result = task.result()
        except asyncio.CancelledError:
            # This worker itself is being stopped: give the job back rather than fail it.
            self._stop(job_id, "stopping")
            await asyncio.shield(self.repository.release(job_id, self.owner))
            raise
        except _Ended as ended:
            await self._ended(claimed, ended.reason)
        except JobCancelled:
            await self._finish(job_id, claimed.kind, JobStatus.cancelled, "JOB_CANCELLED", "job was cancelled")
        except AppError as exc:
            await self._finish(job_id, claimed.kind, JobStatus.failed, exc.code, exc.message, details=exc.details)
        except Exception as exc:
            log_exception(logger, "job failed", exc, job_id=job_id, kind=claimed.kind)
            await self._finish(job_id, claimed.kind, JobStatus.failed, "INTERNAL_ERROR", "the job failed; see the service logs")
        else:
            await self._finish(job_id, claimed.kind, JobStatus.completed, result=result)
        finally:
            heartbeat.cancel()
            self._running.pop(job_id, None)
            self._reasons.pop(job_id, None)
            metrics.JOB_DURATION.labels(claimed.kind).observe(time.perf_counter() - started)

    async def _ended(self, claimed: ClaimedJob, reason: str) -> None:
        job_id = claimed.job_id
        if reason == "timeout":
            await self._finish(
                job_id, claimed.kind, JobStatus.failed, "JOB_TIMEOUT", f"job exceeded {self.settings.timeout_s:g} s"
            )
        elif reason == "cancelled":
            await self._finish(job_id, claimed.kind, JobStatus.cancelled, "JOB_CANCELLED", "job was cancelled")
        elif reason == "stopping":
            await self.repository.release(job_id, self.owner)
            await self.events.announce(job_id)
        # lease_lost: another worker holds the job now; it writes the outcome.

    async def _heartbeat(self, job_id: str) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_s)
            try:
                lease = await self.repository.heartbeat(job_id, self.owner, lease_s=self.settings.lease_s)
            except Exception as exc:  # a database hiccup: try again at the next beat
                log_exception(logger, "heartbeat failed", exc, job_id=job_id)
                continue
            if not lease.owned:
                logger.warning("job lease lost", extra={"job_id": job_id})
                self._stop(job_id, "lease_lost")
                return
            if lease.cancel_requested:
                self._stop(job_id, "cancelled")
                return

    async def _invoke(self, handler: JobHandler | None, ctx: JobContext) -> dict[str, Any]:
        if handler is None:
            raise AppError("no handler for this job kind", code="JOB_KIND_UNKNOWN")
        return await handler(ctx)

    async def _finish(
        self,
        job_id: str,
        kind: str,
        status: JobStatus,
        code: str | None = None,
        message: str | None = None,
        *,
        result: dict[str, Any] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        ended = await asyncio.shield(
            self.repository.finish(
                job_id, status, code, message, owner=self.owner, result=result, details=details
            )
        )
        await self.events.announce(job_id)
        if ended is not None:
            metrics.JOBS_FINISHED.labels(kind, status.value).inc()
            logger.info("job finished", extra={"job_id": job_id, "status": status.value, "error_code": code})
