"""Uploads and jobs: POST /upload, GET /job/{id}, GET /job/{id}/events (SSE), DELETE /job/{id}."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse
from sse_starlette.sse import EventSourceResponse, ServerSentEvent

from ai_med_extract.api.deps import AuditDep, ClinicianDep, ReaderDep, ServicesDep, SessionDep
from ai_med_extract.api.ownership import job_for
from ai_med_extract.api.responses import job_accepted
from ai_med_extract.api.sse import sse_event, sse_response
from ai_med_extract.errors import BadRequest
from ai_med_extract.jobs.events import TERMINAL_EVENTS
from ai_med_extract.jobs.service import job_view
from ai_med_extract.jobs.status import JobStatus
from ai_med_extract.observability import metrics
from ai_med_extract.security.access import Action
from ai_med_extract.security.views import deidentified_result, event_is_visible

router = APIRouter(tags=["jobs"])


@router.post("/upload", status_code=202)
async def upload(
    services: ServicesDep,
    session: SessionDep,
    audit: AuditDep,
    principal: ClinicianDep,
    files: Annotated[list[UploadFile], File(description="One or more documents")],
    password: Annotated[str | None, Form(description="Password of an encrypted PDF")] = None,
    scrub: Annotated[bool, Form(description="Run PHI scrubbing")] = True,
    extract: Annotated[bool, Form(description="Run medical data extraction")] = True,
    phi_operator: Annotated[str | None, Form(description="redact | mask | surrogate")] = None,
) -> JSONResponse:
    incoming = await services.jobs.read_upload(files)
    options: dict[str, Any] = {"scrub": scrub, "extract": extract, "needs_secret": bool(password)}
    if phi_operator:
        options["phi_operator"] = phi_operator
    submitted = await services.jobs.submit(
        session,
        audit,
        kind="upload",
        created_by=principal.user_id,
        tenant=principal.tenant,
        files=incoming,
        options=options,
        secrets={"password": password} if password else None,
        action="document.upload",
        request_data={
            "files": len(incoming),
            "bytes": [len(f.data) for f in incoming],
            "media_types": [f.media_type for f in incoming],
        },
    )
    return job_accepted(submitted)


@router.get("/job/{job_id}")
async def get_job(
    job_id: str, services: ServicesDep, session: SessionDep, audit: AuditDep, principal: ReaderDep
) -> dict[str, Any]:
    job, access = await job_for(services, session, principal, job_id)
    result = services.jobs.result(job) if job.status == JobStatus.completed else None
    if not access.identified:
        result = deidentified_result(job.kind, job.options, result)
    await audit.record(
        action="job.read",
        resource_type="job",
        resource_id=job.id,
        phi_accessed=result is not None,
        request_data={"status": job.status, "view": access.view.value},
        access=access,
    )
    return job_view(job, result)


def _parse_last_event_id(raw: str | None) -> int:
    if raw is None or raw == "":
        return 0
    if not raw.isdigit() or len(raw) > 12:
        raise BadRequest("Last-Event-ID must be a non-negative integer", code="INVALID_LAST_EVENT_ID")
    return int(raw)


@router.get("/job/{job_id}/events")
async def job_events(
    job_id: str,
    request: Request,
    services: ServicesDep,
    session: SessionDep,
    audit: AuditDep,
    principal: ReaderDep,
    last_event_id: str | None = None,
) -> EventSourceResponse:
    after = _parse_last_event_id(request.headers.get("last-event-id", last_event_id))
    job, access = await job_for(services, session, principal, job_id)
    kind, options = job.kind, dict(job.options or {})
    visible = access.identified or event_is_visible(kind, options, "token")
    await audit.record(
        action="job.events",
        resource_type="job",
        resource_id=job.id,
        phi_accessed=job.kind != "upload" and visible,  # summary jobs stream generated text
        request_data={"after": after, "view": access.view.value},
        access=access,
    )
    await session.commit()  # the audit row is in before the stream starts, which may last minutes
    events = services.events

    async def stream() -> AsyncIterator[ServerSentEvent]:
        seen = after
        version = events.version(job_id)
        metrics.SSE_STREAMS.inc()
        try:
            while True:
                batch = await events.read_after(job_id, seen)
                for item in batch:
                    seen = item.seq
                    if not access.identified and not event_is_visible(kind, options, item.event):
                        continue
                    yield sse_event(item.event, item.data, id=item.seq)
                    if item.event in TERMINAL_EVENTS:
                        return
                if batch:
                    continue
                if await request.is_disconnected():
                    return
                # Woken by writes in any process (PostgreSQL notifications); the timeout is a safety net.
                version = await events.wait(job_id, version, timeout=1.0)
        finally:
            metrics.SSE_STREAMS.dec()

    return sse_response(stream())


@router.delete("/job/{job_id}")
async def delete_job(
    job_id: str, services: ServicesDep, session: SessionDep, audit: AuditDep, principal: ClinicianDep
) -> dict[str, Any]:
    """Cancel a queued or running job (from any replica); remove a finished job with its results."""
    job, access = await job_for(services, session, principal, job_id, Action.write)
    outcome = await services.jobs.cancel_or_delete(session, audit, job, access)
    return {"job_id": job_id, "status": outcome}
