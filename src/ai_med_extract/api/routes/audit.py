"""The audit trail for admins: ``GET /audit`` pages through it, ``GET /audit/export`` streams it as
FHIR ``AuditEvent`` NDJSON. Both read metadata only, and are themselves audited."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from sqlalchemy import select

from ai_med_extract.api.deps import AdminDep, AuditDep, ServicesDep, SessionDep
from ai_med_extract.audit.fhir import export_events
from ai_med_extract.db.base import as_utc
from ai_med_extract.db.tables import AuditLog

router = APIRouter(tags=["audit"])


def _row(row: AuditLog) -> dict[str, Any]:
    return {
        "id": row.id, "timestamp": as_utc(row.timestamp).isoformat(), "user_id": row.user_id,
        "action": row.action, "resource_type": row.resource_type, "resource_id": row.resource_id,
        "phi_accessed": row.phi_accessed, "ip_address": str(row.ip_address) if row.ip_address else None,
        "response_status": row.response_status, "error_code": row.error_message,
        "request_data": row.request_data, "row_hash": row.row_hash,
    }


@router.get("/audit")
async def list_audit(
    services: ServicesDep,
    session: SessionDep,
    audit: AuditDep,
    _: AdminDep,
    after_id: Annotated[int, Query(ge=0, description="Rows after this id (the previous page's next_after_id)")] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    action: Annotated[str | None, Query(max_length=100)] = None,
    user_id: Annotated[str | None, Query(max_length=255)] = None,
) -> dict[str, Any]:
    query = select(AuditLog).where(AuditLog.id > after_id).order_by(AuditLog.id).limit(limit)
    if action:
        query = query.where(AuditLog.action == action)
    if user_id:
        query = query.where(AuditLog.user_id == user_id)
    rows = list((await session.execute(query)).scalars())
    await audit.record(action="audit.read", resource_type="audit_log", phi_accessed=False,
                       request_data={"after_id": after_id, "rows": len(rows), "action": action})
    return {"rows": [_row(r) for r in rows],
            "next_after_id": rows[-1].id if len(rows) == limit else None}


@router.get("/audit/export")
async def export_audit(
    services: ServicesDep, session: SessionDep, audit: AuditDep, _: AdminDep,
    after_id: Annotated[int, Query(ge=0)] = 0,
) -> StreamingResponse:
    await audit.record(action="audit.export", resource_type="audit_log", phi_accessed=False,
                       request_data={"after_id": after_id, "format": "fhir-ndjson"})
    await session.commit()
    sessionmaker = services.sessionmaker

    async def lines() -> AsyncIterator[bytes]:
        async with sessionmaker() as reader:
            async for event in export_events(reader, after_id):
                yield (json.dumps(event, separators=(",", ":")) + "\n").encode()

    return StreamingResponse(lines(), media_type="application/fhir+ndjson")
