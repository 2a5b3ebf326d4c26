"""Structured medical data: extraction, reading and clinician corrections (versioned, audited).

    POST /extract_medical_data     text, or the id of a processed document -> a stored record (v1)
    GET  /get_updated_medical_data record_id or document_id [version] -> data, FHIR bundle, history
    GET  /medical/{record_id}/fhir [version] -> the FHIR R4 Bundle alone, as application/fhir+json
    PUT  /update_medical_data      record_id, version read, corrected data -> next version (409 if stale)

Reads answer an ``ETag`` naming the record and version; a correction may send it back in ``If-Match``
and is refused with ``412 MEDICAL_PRECONDITION_FAILED`` when the record has moved on since (the body's
``version`` may then be left out). The body's version, when given, is still checked (409).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Literal

from fastapi import APIRouter, Header, Path, Query, Response
from pydantic import BaseModel, Field, ValidationError, model_validator

from ai_med_extract.agents.medical.fhir import FHIR_MEDIA_TYPE, to_fhir_bundle
from ai_med_extract.agents.medical.schema import MedicalExtraction
from ai_med_extract.api.deps import AuditDep, ClinicianDep, ReaderDep, ServicesDep, SessionDep
from ai_med_extract.api.ownership import document_for
from ai_med_extract.db.medical import RecordView, VersionInfo
from ai_med_extract.errors import BadRequest, NotFound, PreconditionFailed, Unprocessable
from ai_med_extract.jobs.document import DocumentResult
from ai_med_extract.security.access import Access, Action, Owner, authorize
from ai_med_extract.security.keys import Principal
from ai_med_extract.services import Services

router = APIRouter(tags=["medical"])

MAX_TEXT_CHARS = 2_000_000


class ExtractRequest(BaseModel):
    text: str | None = Field(None, max_length=MAX_TEXT_CHARS, description="Clinical text")
    document_id: str | None = Field(None, max_length=64, description="A processed document's id")
    mode: Literal["rules", "llm"] = Field("rules", description="rules (default, no model) or llm-assisted")
    model: str | None = Field(None, max_length=200, description="LLM mode: a model from the catalogue")
    fhir: bool = Field(True, description="Include the FHIR R4 Bundle")

    @model_validator(mode="after")
    def _one_source(self) -> ExtractRequest:
        if (self.text is None) == (self.document_id is None):
            raise ValueError("give exactly one of text or document_id")
        return self


class VersionOut(BaseModel):
    version: int
    changed_by: str | None
    reason: str | None
    counts: dict[str, Any]
    created_at: str


class RecordOut(BaseModel):
    record_id: str
    document_id: str | None
    version: int
    latest_version: int
    mode: str
    data: MedicalExtraction
    counts: dict[str, int]
    fhir: dict[str, Any] | None = None
    history: list[VersionOut] = Field(default_factory=list)


class UpdateRequest(BaseModel):
    record_id: str = Field(..., max_length=64)
    version: int | None = Field(
        None, ge=1, description="The version the correction is based on (may be left out when If-Match is sent)"
    )
    data: dict[str, Any] = Field(..., description="The corrected data (the extraction schema)")


class UpdateOut(BaseModel):
    record_id: str
    version: int
    counts: dict[str, int]


def etag(record_id: str, version: int) -> str:
    """The strong entity tag of one version of one record."""
    return f'"{record_id}.v{version}"'


def _if_match_version(if_match: str, record_id: str, current: int) -> int:
    """The version an If-Match header holds the correction to, or 412 if it does not match the record."""
    tags = [t.strip() for t in if_match.split(",") if t.strip()]
    if "*" in tags or etag(record_id, current) in tags:
        return current
    raise PreconditionFailed(
        "the medical record was changed since the version named in If-Match",
        code="MEDICAL_PRECONDITION_FAILED",
        details={"current_version": current, "etag": etag(record_id, current)},
    )


def _history(rows: list[VersionInfo]) -> list[VersionOut]:
    return [
        VersionOut(version=r.version, changed_by=r.changed_by, reason=r.reason, counts=r.counts,
                   created_at=r.created_at.isoformat())
        for r in rows
    ]


def _out(view: RecordView, latest: int, *, fhir: bool, history: list[VersionInfo]) -> RecordOut:
    data = MedicalExtraction.model_validate(view.data)
    return RecordOut(
        record_id=view.id,
        document_id=view.document_id,
        version=view.version,
        latest_version=latest,
        mode=view.mode,
        data=data,
        counts=data.counts(),
        fhir=to_fhir_bundle(data, seed=f"{view.id}/{view.version}") if fhir else None,
        history=_history(history),
    )


def _record_not_found(record_id: str) -> NotFound:
    return NotFound("no such medical record", code="MEDICAL_RECORD_NOT_FOUND", details={"record_id": record_id[:64]})


def _record_access(principal: Principal, view: RecordView, action: Action = Action.read) -> Access:
    return authorize(principal, Owner(view.created_by, view.tenant), _record_not_found(view.id), action)


async def _document_text(services: Services, session: Any, principal: Principal, document_id: str) -> str:
    _, result, _ = await document_for(services, session, principal, document_id, Action.write)
    if not result:
        raise Unprocessable("the document has not been processed", code="DOCUMENT_NOT_PROCESSED",
                            details={"document_id": document_id[:64]})
    text = DocumentResult.from_dict(result).best_text()
    if not text:
        raise Unprocessable("the document has no text", code="DOCUMENT_HAS_NO_TEXT",
                            details={"document_id": document_id[:64]})
    return str(text)


@router.post("/extract_medical_data", response_model=RecordOut)
async def extract_medical_data(
    body: ExtractRequest,
    response: Response,
    services: ServicesDep,
    session: SessionDep,
    audit: AuditDep,
    principal: ClinicianDep,
) -> RecordOut:
    agent = services.medical_agent()
    if body.document_id is not None:
        text = await _document_text(services, session, principal, body.document_id)
        await session.commit()  # end the read: the extraction below may be slow (LLM mode)
    else:
        text = body.text or ""
    extraction = await agent.aextract(text, mode=body.mode, model=body.model)
    counts = extraction.counts()
    repo = services.medical_records
    view = await repo.create(
        session,
        source=text,
        data=extraction.model_dump(mode="json"),
        counts=counts,
        mode=extraction.mode,
        document_id=body.document_id,
        created_by=principal.user_id,
        tenant=principal.tenant,
    )
    await audit.record(
        action="medical.extract",
        resource_type="medical_record",
        resource_id=view.id,
        phi_accessed=True,
        request_data={
            "characters": len(text),
            "source": "document" if body.document_id else "text",
            "document_id": body.document_id,
            "mode": extraction.mode,
            "counts": counts,
            "llm_dropped_ungrounded": extraction.llm_dropped_ungrounded,
        },
    )
    history = await repo.history(session, view.id)
    response.headers["ETag"] = etag(view.id, view.version)
    return _out(view, view.version, fhir=body.fhir, history=history)


@router.get("/get_updated_medical_data", response_model=RecordOut)
async def get_updated_medical_data(
    response: Response,
    services: ServicesDep,
    session: SessionDep,
    audit: AuditDep,
    principal: ReaderDep,
    record_id: str | None = Query(None, max_length=64),
    document_id: str | None = Query(None, max_length=64),
    version: int | None = Query(None, ge=1, description="A past version (default: the latest)"),
    fhir: bool = Query(True),
) -> RecordOut:
    repo = services.medical_records
    if (record_id is None) == (document_id is None):
        raise BadRequest("give exactly one of record_id or document_id", code="MEDICAL_QUERY_INVALID")
    if record_id is None:
        assert document_id is not None
        record_id = await repo.latest_for_document(session, document_id)
        if record_id is None:
            raise NotFound("no medical record for the document", code="MEDICAL_RECORD_NOT_FOUND",
                           details={"document_id": document_id[:64]})
    latest = await repo.get(session, record_id)
    access = _record_access(principal, latest)
    view = latest if version is None else await repo.get(session, record_id, version=version)
    history = await repo.history(session, record_id)
    await audit.record(
        action="medical.read",
        resource_type="medical_record",
        resource_id=record_id,
        phi_accessed=True,
        request_data={"version": view.version, "latest_version": latest.version, "fhir": fhir},
        access=access,
    )
    response.headers["ETag"] = etag(record_id, view.version)
    return _out(view, latest.version, fhir=fhir, history=history)


@router.get(
    "/medical/{record_id}/fhir",
    response_class=Response,
    responses={200: {"content": {FHIR_MEDIA_TYPE: {"schema": {"type": "object"}}},
                     "description": "A FHIR R4 (4.0.1) Bundle of type collection"}},
)
async def medical_record_fhir(
    services: ServicesDep,
    session: SessionDep,
    audit: AuditDep,
    principal: ReaderDep,
    record_id: str = Path(..., max_length=64),
    version: int | None = Query(None, ge=1, description="A past version (default: the latest)"),
) -> Response:
    """The record's FHIR R4 Bundle on its own, for loading into other systems."""

    repo = services.medical_records
    view = await repo.get(session, record_id, version=version)
    data = MedicalExtraction.model_validate(view.data)
    bundle = await asyncio.to_thread(to_fhir_bundle, data, seed=f"{view.id}/{view.version}")
    await audit.record(
        action="medical.read",
        resource_type="medical_record",
        resource_id=record_id,
        phi_accessed=True,
        request_data={"version": view.version, "format": "fhir"},
    )
    return Response(json.dumps(bundle, ensure_ascii=False), media_type=FHIR_MEDIA_TYPE)


@router.put("/update_medical_data", response_model=UpdateOut)
async def update_medical_data(
    body: UpdateRequest,
    response: Response,
    services: ServicesDep,
    session: SessionDep,
    audit: AuditDep,
    principal: ClinicianDep,
    if_match: str | None = Header(
        None, max_length=512, description="An ETag from a read of this record; 412 if the record changed since"
    ),
) -> UpdateOut:
    repo = services.medical_records
    current = await repo.get(session, body.record_id)
    access = _record_access(principal, current, Action.write)
    expected = body.version
    if if_match is not None:
        matched = _if_match_version(if_match, body.record_id, current.version)
        expected = expected if expected is not None else matched
    if expected is None:
        raise BadRequest("give the version read, in the body or as If-Match", code="MEDICAL_VERSION_REQUIRED")
    try:
        corrected = MedicalExtraction.model_validate(body.data)
    except ValidationError as exc:
        raise Unprocessable(
            "the corrected data does not match the schema", code="MEDICAL_DATA_INVALID",
            details={"errors": [{"loc": list(e["loc"]), "type": e["type"]} for e in exc.errors()[:20]]},
        ) from None
    ungrounded = corrected.ungrounded(current.source)
    if ungrounded:
        raise Unprocessable(
            "items must point at their words in the source text (or use detector 'clinician')",
            code="MEDICAL_ITEM_NOT_GROUNDED", details={"items": ungrounded[:20]},
        )
    counts = corrected.counts()
    new_version = await repo.update(
        session, body.record_id, expected_version=expected,
        data=corrected.model_dump(mode="json"), counts=counts, changed_by=principal.user_id,
    )
    await audit.record(
        action="medical.update",
        resource_type="medical_record",
        resource_id=body.record_id,
        phi_accessed=True,
        request_data={"from_version": expected, "version": new_version, "counts": counts,
                      "if_match": if_match is not None},
        access=access,
    )
    response.headers["ETag"] = etag(body.record_id, new_version)
    return UpdateOut(record_id=body.record_id, version=new_version, counts=counts)

