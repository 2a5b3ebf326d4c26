"""Audit rows as FHIR R4 ``AuditEvent`` resources (one JSON object a line for NDJSON export).

Only the row's metadata goes out, as stored: who (the key id), when, from where, what action on which
resource id, and the outcome. ``request_data`` stays out: it is for this service's own reviews.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ai_med_extract.db.base import as_utc
from ai_med_extract.db.tables import AuditLog

_DICOM = "http://dicom.nema.org/resources/ontology/DCM"
_ACTION_CODES = {  # AuditEvent.action: C R U D E
    "upload": "C", "generate": "E", "scrub": "E", "extract": "C", "transcribe": "E", "soap": "E",
    "read": "R", "events": "R", "update": "U", "delete": "D", "cancel": "U", "reidentify": "E",
    "patient_openvino": "E", "failed": "E", "rate_limited": "E",
}


def _outcome(status: int | None) -> str:
    if status is None or status < 400:
        return "0"  # success
    return "4" if status < 500 else "8"  # minor failure, serious failure


def audit_event(row: AuditLog) -> dict[str, Any]:
    verb = row.action.rsplit(".", 1)[-1] if "." in row.action else row.action
    agent: dict[str, Any] = {"requestor": True, "who": {"identifier": {"value": row.user_id or "anonymous"}}}
    if row.ip_address:
        agent["network"] = {"address": str(row.ip_address), "type": "2"}
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(row.id),
        "type": {"system": _DICOM, "code": "110110", "display": "Patient Record"}
        if row.phi_accessed else {"system": _DICOM, "code": "110100", "display": "Application Activity"},
        "subtype": [{"system": "urn:ai-med-extract:audit-action", "code": row.action}],
        "action": _ACTION_CODES.get(verb, "E"),
        "recorded": as_utc(row.timestamp).isoformat(),
        "outcome": _outcome(row.response_status),
        "agent": [agent],
        "source": {"observer": {"display": "ai-med-extract"}},
        "extension": [{"url": "urn:ai-med-extract:audit-row-hash", "valueString": row.row_hash}],
    }
    if row.error_message:
        event["outcomeDesc"] = row.error_message  # a stable error code, never text
    if row.resource_type or row.resource_id:
        entity: dict[str, Any] = {"type": {"system": "urn:ai-med-extract:resource", "code": row.resource_type or "-"}}
        if row.resource_id:
            entity["what"] = {"identifier": {"value": row.resource_id}}
        event["entity"] = [entity]
    return event


async def export_events(session: AsyncSession, after_id: int = 0, batch: int = 1000) -> AsyncIterator[dict[str, Any]]:
    """Every row after ``after_id`` as an AuditEvent, read in batches (constant memory)."""
    last = after_id
    while True:
        rows = list((await session.execute(
            select(AuditLog).where(AuditLog.id > last).order_by(AuditLog.id).limit(batch))).scalars())
        if not rows:
            return
        for row in rows:
            yield audit_event(row)
        last = rows[-1].id
