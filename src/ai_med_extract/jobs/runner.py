"""Job runners: how a committed job reaches a worker. ``JobRunner`` is the interface the API uses;
``InProcessJobRunner`` is the embedded default (``make run``, SQLite, nothing else to start): it runs
jobs inside this process with the same ``JobExecutor`` that ``ai-med-extract worker`` processes use
behind the distributed engine (``jobs/engine.py``).

Jobs are persisted before they are dispatched, so a restart loses none. Recovery (at start-up and
then every lease period) touches only jobs whose lease has expired: their worker is gone, so they
are queued again (or failed once their attempts are spent). Jobs other workers hold are left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from typing import Any

from ai_med_extract.config import JobSettings
from ai_med_extract.jobs.events import JobEvents
from ai_med_extract.jobs.executor import JobExecutor, JobHandler
from ai_med_extract.jobs.repository import JobRepository
from ai_med_extract.observability.logs import log_exception

logger = logging.getLogger(__name__)


class JobRunner(ABC):
    """What the API needs from a runner."""

    runs_jobs: bool = False  # True when this process executes jobs itself

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def stop(self) -> None: ...

    @abstractmethod
    async def dispatch(self, job_id: str) -> None:
        """Hand a committed job to a worker."""

    @abstractmethod
    def health(self) -> dict[str, Any]: ...


async def recover(repository: JobRepository, settings: JobSettings, events: JobEvents) -> list[str]:
    """Queue again the jobs whose lease expired; return their ids for dispatch."""
    recovery = await repository.recover_expired(max_attempts=settings.max_attempts)
    for job_id in recovery.requeued + recovery.ended:
        await events.announce(job_id)
    if recovery.requeued or recovery.ended:
        logger.info(
            "recovered jobs with expired leases",
            extra={"requeued": len(recovery.requeued), "ended": len(recovery.ended)},
        )
    return recovery.requeued


class InProcessJobRunner(JobRunner):
    runs_jobs = True

    def __init__(self, *, settings: JobSettings, repository: JobRepository, events: JobEvents, executor: JobExecutor):
        self.settings = settings
        self._repository = repository
        self._events = events
        self.executor = executor
        self._handlers = executor.handlers
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []
        self._sweeper: asyncio.Task[None] | None = None
        self._stopping = False

    def register(self, kind: str, handler: JobHandler) -> None:
        self._handlers[kind] = handler

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        await recover(self._repository, self.settings, self._events)
        for job_id in await self._repository.queued_ids():
            self._queue.put_nowait(job_id)
        self._workers = [
            asyncio.create_task(self._worker(i), name=f"job-worker-{i}") for i in range(self.settings.concurrency)
        ]
        self._sweeper = asyncio.create_task(self._sweep(), name="job-lease-sweep")

    async def stop(self) -> None:
        self._stopping = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        await self.executor.stop()
        for worker in self._workers:
            worker.cancel()
        if self._workers:
            await asyncio.wait(self._workers, timeout=30)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.settings.lease_s / 2)
            try:
                for job_id in await recover(self._repository, self.settings, self._events):
                    self._queue.put_nowait(job_id)
            except Exception as exc:
                log_exception(logger, "lease recovery failed", exc)

    # -- queue ------------------------------------------------------------------------------
    async def dispatch(self, job_id: str) -> None:
        self._queue.put_nowait(job_id)

    def health(self) -> dict[str, Any]:
        alive = sum(1 for w in self._workers if not w.done())
        return {
            "workers": alive,
            "running": self.executor.running,
            "ok": alive == len(self._workers) and not self._stopping,
        }

    async def _worker(self, index: int) -> None:
        while not self._stopping:
            job_id = await self._queue.get()
            try:
                await self.executor.run(job_id)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never let one job stop the worker
                log_exception(logger, "job runner error", exc, job_id=job_id)
            finally:
                with contextlib.suppress(ValueError):
                    self._queue.task_done()
