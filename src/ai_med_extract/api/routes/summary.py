"""Patient summaries and SOAP notes as jobs: POST /generate_patient_summary, POST /generate_soap_note.

Both answer ``202`` with a job id at once. Progress and the generated text stream on the job's event
stream (``GET /job/{id}/events``: ``progress``, ``token`` {section, text}, then ``complete``); the result
is read with ``GET /job/{id}``. The record is validated before the job is queued, so malformed input
(a FHIR Bundle that does not validate, a bad date) is a ``422`` naming where, never a failed job.
"""

from __future__ import annotations

import asyncio
import json
from datetime import date
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError

from ai_med_extract.agents.summary import TEMPLATE_MODEL, SummaryOptions, load_record
from ai_med_extract.agents.summary.soap import transcript_record
from ai_med_extract.api.deps import AuditDep, ClinicianDep, ServicesDep, SessionDep
from ai_med_extract.api.ownership import job_for
from ai_med_extract.api.responses import job_accepted
from ai_med_extract.errors import BadRequest, Conflict, PayloadTooLarge, ServiceUnavailable, Unprocessable
from ai_med_extract.jobs.document import DocumentResult
from ai_med_extract.jobs.status import JobStatus
from ai_med_extract.security.access import Action
from ai_med_extract.services import Services

router = APIRouter(tags=["summaries"])


class SummaryRequest(BaseModel):
    patient_data: Any = Field(
        None,
        description="A FHIR R4 Bundle, the patient data model, a list of notes, or {documents: [...]}",
    )
    job_id: str | None = Field(None, description="Summarise the documents of a finished upload job instead")
    model: str | None = Field(None, max_length=200, description="Model name from the catalogue, or 'template'")
    deidentify: bool = Field(False, description="Overview without name, birth date, MRN, address")
    grounding: Literal["remove", "flag"] | None = Field(None, description="Unsupported statements: remove or flag")
    as_of: date | None = Field(None, description="Date guideline checks are judged at")
    context_tokens: int | None = Field(None, ge=256, le=1_000_000, description="Cap on the context window used")

    def options(self) -> SummaryOptions:
        return SummaryOptions(
            model=self.model, deidentify=self.deidentify, grounding=self.grounding, as_of=self.as_of,
            context_tokens=self.context_tokens,
        )


class SoapRequest(BaseModel):
    transcript: Any = Field(..., description="Transcript text, or {segments: [{text, start_s, end_s}]}")
    model: str | None = Field(None, max_length=200)
    grounding: Literal["remove", "flag"] | None = None


async def _body(request: Request, services: Services) -> Any:
    limit = services.settings.summary.max_record_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge("the record is larger than the limit", code="RECORD_TOO_LARGE",
                              details={"max_bytes": limit})
    raw = await request.body()
    if len(raw) > limit:
        raise PayloadTooLarge("the record is larger than the limit", code="RECORD_TOO_LARGE",
                              details={"max_bytes": limit})
    if not raw:
        raise BadRequest("empty request body", code="EMPTY_BODY")
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequest("the body is not valid JSON", code="INVALID_JSON") from None


def _validated(model: type[BaseModel], data: Any) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [{"loc": ".".join(str(p) for p in e["loc"]), "type": e["type"]}
                  for e in exc.errors(include_url=False, include_input=False, include_context=False)]
        raise Unprocessable("invalid request", code="REQUEST_INVALID", details={"errors": errors[:20]}) from None


def _check_model(services: Services, name: str | None) -> None:
    if name is None or name == TEMPLATE_MODEL:
        return
    pool = services.pool
    if pool is None:
        return  # no model pool in this deployment: the template answers (reported in the result)
    pool.catalogue.get(name)  # MODEL_NOT_FOUND for unknown names


async def _queue(
    services: Services, session: Any, audit: Any, principal: Any, *, payload: dict[str, Any],
    options: dict[str, Any], action: str, request_data: dict[str, Any],
) -> JSONResponse:
    if services.agents.summary is None:
        raise ServiceUnavailable("patient summaries are not enabled", code="SUMMARY_UNAVAILABLE")
    submitted = await services.jobs.submit(
        session,
        audit,
        kind="summary",
        created_by=principal.user_id,
        tenant=principal.tenant,
        options=options,
        payload=payload,
        action=action,
        request_data=request_data,
    )
    return job_accepted(submitted)


@router.post("/generate_patient_summary", status_code=202)
async def generate_patient_summary(
    request: Request, services: ServicesDep, session: SessionDep, audit: AuditDep, principal: ClinicianDep
) -> JSONResponse:
    body = _validated(SummaryRequest, await _body(request, services))
    if (body.patient_data is None) == (body.job_id is None):
        raise BadRequest("give either patient_data or job_id", code="RECORD_MISSING")
    _check_model(services, body.model)
    record_data = body.patient_data
    if body.job_id is not None:
        source, _ = await job_for(services, session, principal, body.job_id, Action.write)
        if source.kind != "upload":
            raise BadRequest("job_id must name an upload job", code="NOT_AN_UPLOAD_JOB")
        if source.status != JobStatus.completed:
            raise Conflict("the upload job has not completed", code="JOB_NOT_COMPLETED",
                           details={"status": source.status})
        result = services.jobs.result(source) or {}
        record_data = {"documents": [_document_input(d) for d in result.get("documents") or []]}
    record = await asyncio.to_thread(load_record, record_data)  # 422 here, before anything is queued
    stats = record.stats()
    options = body.options().model_dump(mode="json", exclude_none=True)
    return await _queue(
        services, session, audit, principal,
        payload={"record": record_data},
        options={"task": "summary", "summary": options},
        action="summary.generate",
        request_data={
            "input_kind": stats["kind"], "facts": stats["facts"], "ignored": stats["ignored_total"],
            "bytes": int(request.headers.get("content-length") or 0), "model": body.model,
            "deidentify": body.deidentify, "source_job_id": body.job_id,
        },
    )


def _document_input(stored: dict[str, Any]) -> dict[str, Any]:
    """An upload result as summary input: the scrubbed text when scrubbing ran, and any FHIR output."""
    doc = DocumentResult.from_dict(stored)
    out: dict[str, Any] = {"document_id": stored.get("document_id"), "text": doc.best_text() or ""}
    if doc.fhir is not None:
        out["fhir"] = doc.fhir
    return out


@router.post("/generate_soap_note", status_code=202)
async def generate_soap_note(
    request: Request, services: ServicesDep, session: SessionDep, audit: AuditDep, principal: ClinicianDep
) -> JSONResponse:
    body = _validated(SoapRequest, await _body(request, services))
    _check_model(services, body.model)
    record = await asyncio.to_thread(transcript_record, body.transcript)
    options = SummaryOptions(model=body.model, grounding=body.grounding).model_dump(mode="json", exclude_none=True)
    return await _queue(
        services, session, audit, principal,
        payload={"transcript": body.transcript},
        options={"task": "soap", "summary": options},
        action="summary.soap",
        request_data={"sentences": len(record.facts), "model": body.model},
    )
