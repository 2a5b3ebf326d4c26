"""Loading a resource for a caller: the row when the caller may see it, else the resource's own 404.

Routes call these instead of the services' bare ``get``; the rules live in ``security.access``.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from ai_med_extract.db.tables import Document, Job
from ai_med_extract.errors import NotFound
from ai_med_extract.security.access import Access, Action, Owner, authorize
from ai_med_extract.security.keys import Principal
from ai_med_extract.services import Services


def job_not_found(job_id: str) -> NotFound:
    return NotFound("no such job", code="JOB_NOT_FOUND", details={"job_id": job_id[:64]})


async def job_for(
    services: Services, session: AsyncSession, principal: Principal, job_id: str, action: Action = Action.read
) -> tuple[Job, Access]:
    job = await services.jobs.get(session, job_id)
    return job, authorize(principal, Owner.of(job), job_not_found(job_id), action)


async def document_for(
    services: Services, session: AsyncSession, principal: Principal, document_id: str, action: Action = Action.read
) -> tuple[Document, dict | None, Access]:  # type: ignore[type-arg]
    """A document (owned through its job) with its decrypted result."""
    doc, result = await services.jobs.document(session, document_id)
    job = await session.get(Job, doc.job_id)
    missing = NotFound("no such document", code="DOCUMENT_NOT_FOUND", details={"document_id": document_id[:64]})
    if job is None:
        raise missing
    return doc, result, authorize(principal, Owner.of(job), missing, action)
