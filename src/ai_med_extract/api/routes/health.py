"""Liveness, readiness and Prometheus metrics (no authentication; no patient data)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ai_med_extract.api.deps import ServicesDep
from ai_med_extract.db.engine import check_database
from ai_med_extract.jobs.status import JobStatus
from ai_med_extract.observability import metrics
from ai_med_extract.observability.logs import log_exception

router = APIRouter(tags=["health"])


def _now() -> str:
    return datetime.now(UTC).isoformat()


@router.get("/health/live")
async def live() -> dict[str, str]:
    return {"status": "alive", "timestamp": _now()}


@router.get("/health/ready")
async def ready(services: ServicesDep) -> JSONResponse:
    logger = logging.getLogger(__name__)
    checks: dict[str, Any] = {}
    try:
        await check_database(services.sessionmaker, timeout_s=5)
        checks["database"] = "ok"
    except Exception as exc:
        log_exception(logger, "readiness: database check failed", exc)
        checks["database"] = "error"
    try:
        await asyncio.to_thread(services.store.check)
        checks["file_storage"] = "ok"
    except Exception as exc:
        log_exception(logger, "readiness: storage check failed", exc)
        checks["file_storage"] = "error"
    pool = services.pool
    if pool is not None:
        try:
            health = pool.health()
            checks["model_manager"] = "ok" if health.get("ok", True) else "degraded"
        except Exception as exc:
            log_exception(logger, "readiness: model manager check failed", exc)
            checks["model_manager"] = "error"
    else:
        checks["model_manager"] = "not_configured"
    runner = services.runner.health()
    checks["job_runner"] = "ok" if runner["ok"] else "error"
    failed = [name for name, value in checks.items() if value == "error"]
    body = {"status": "not_ready" if failed else "ready", "checks": checks, "timestamp": _now()}
    return JSONResponse(body, status_code=503 if failed else 200)


@router.get("/metrics")
async def prometheus_metrics(services: ServicesDep) -> Response:
    # Job counts, leases and per-worker activity come from the shared database, so they are right
    # after a restart and the same on every replica.
    try:
        fleet = await services.jobs.repository.fleet()
        for state in JobStatus:
            metrics.JOBS.labels(state.value).set(fleet.by_status.get(state.value, 0))
        metrics.JOB_QUEUE_DEPTH.set(fleet.by_status.get(JobStatus.queued.value, 0))
        metrics.JOB_WORKER_RUNNING.clear()
        for worker, running in fleet.by_worker.items():
            metrics.JOB_WORKER_RUNNING.labels(worker).set(running)
        metrics.JOB_LEASES_EXPIRED.set(fleet.leases_expired)
        metrics.JOBS_RETRIED.set(fleet.retried)
    except Exception as exc:
        log_exception(logging.getLogger(__name__), "metrics: job counts unavailable", exc)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
