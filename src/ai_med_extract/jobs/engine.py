"""The distributed task engine: procrastinate on PostgreSQL.

The API defers one procrastinate task, ``run_job(job_id)``, after it commits a job; ``ai-med-extract
worker`` processes run that task with the same ``JobExecutor`` the embedded runner uses. Procrastinate
delivers (its queue lives in PostgreSQL tables, woken by LISTEN/NOTIFY); the job's lease in our own
table decides who runs it, so a task delivered twice runs the job once. A ``queueing_lock`` per job
keeps at most one waiting task per job, so re-dispatching is always safe.

Each worker also sweeps for expired leases (a worker that died mid-job) and defers those jobs again,
and at start-up dispatches queued jobs that have no task (an API that stopped between its commit and
its defer).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from ai_med_extract.config import JobSettings, Settings
from ai_med_extract.jobs.events import JobEvents, libpq_url
from ai_med_extract.jobs.executor import JobExecutor
from ai_med_extract.jobs.repository import JobRepository
from ai_med_extract.jobs.runner import JobRunner, recover
from ai_med_extract.observability.logs import log_exception

logger = logging.getLogger(__name__)

TASK_NAME = "ai_med_extract.run_job"
QUEUE = "jobs"


def build_app(settings: Settings, *, max_connections: int = 4) -> Any:
    import procrastinate

    connector = procrastinate.PsycopgConnector(
        conninfo=libpq_url(settings.database.url), min_size=1, max_size=max_connections
    )
    return procrastinate.App(connector=connector)


async def defer(app: Any, job_id: str) -> None:
    from procrastinate.exceptions import AlreadyEnqueued

    with contextlib.suppress(AlreadyEnqueued):  # a task for this job already waits: nothing to add
        await app.configure_task(TASK_NAME, queue=QUEUE, queueing_lock=job_id).defer_async(job_id=job_id)


async def apply_schema(database_url: str) -> None:
    """Create procrastinate's tables once (called by ``db upgrade`` under its advisory lock)."""
    import asyncpg
    from procrastinate.schema import SchemaManager

    conn = await asyncpg.connect(libpq_url(database_url))
    try:
        if await conn.fetchval("SELECT to_regclass('procrastinate_jobs')") is None:
            await conn.execute(SchemaManager.get_schema())
    finally:
        await conn.close()


class ProcrastinateRunner(JobRunner):
    """The API side: dispatch only; the API never runs pipeline stages."""

    runs_jobs = False

    def __init__(self, settings: Settings):
        # One connection per concurrent upload that is deferring its job (16 clients need a few).
        self._app = build_app(settings, max_connections=max(4, settings.database.pool_size))
        self._opened = False

    async def start(self) -> None:
        await self._app.open_async()
        self._opened = True

    async def stop(self) -> None:
        if self._opened:
            await self._app.close_async()
            self._opened = False

    async def dispatch(self, job_id: str) -> None:
        await defer(self._app, job_id)

    def health(self) -> dict[str, Any]:
        return {"engine": "procrastinate", "ok": self._opened}


class Worker:
    """One ``ai-med-extract worker`` process."""

    def __init__(
        self, *, settings: JobSettings, app: Any, executor: JobExecutor, repository: JobRepository, events: JobEvents
    ):
        self.settings = settings
        self.app = app
        self.executor = executor
        self.repository = repository
        self.events = events

        @app.task(name=TASK_NAME, queue=QUEUE)
        async def run_job(job_id: str) -> None:
            try:
                await self.executor.run(job_id)
            except asyncio.CancelledError:
                # Stopped past the grace period: the executor handed the job back; queue it again.
                await asyncio.shield(defer(self.app, job_id))
                raise

    async def run(self) -> None:
        if self.settings.warm_up:
            await self.executor.warm_up()
        sweeper = asyncio.create_task(self._sweep(), name="job-lease-sweep")
        try:
            for job_id in await self.repository.queued_ids():
                await defer(self.app, job_id)
            await self.app.run_worker_async(
                queues=[QUEUE],
                concurrency=self.settings.concurrency,
                name=self.executor.owner,
                shutdown_graceful_timeout=self.settings.shutdown_grace_s,
                delete_jobs="successful",
                install_signal_handlers=True,
            )
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            await self.executor.stop()

    async def _sweep(self) -> None:
        while True:
            try:
                for job_id in await recover(self.repository, self.settings, self.events):
                    await defer(self.app, job_id)
            except Exception as exc:
                log_exception(logger, "lease recovery failed", exc)
            await asyncio.sleep(self.settings.lease_s / 2)
