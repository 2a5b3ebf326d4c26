"""PHI scrubbing: POST /scrub_phi, and POST /scrub_phi/reidentify (admin, audited) for reversible mode."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ai_med_extract.agents.phi.agent import PhiAgent
from ai_med_extract.agents.phi.types import Operator
from ai_med_extract.api.deps import AdminDep, AuditDep, ClinicianDep, ServicesDep, SessionDep
from ai_med_extract.errors import NotFound
from ai_med_extract.security.access import Action, Owner, authorize

router = APIRouter(tags=["phi"])

MAX_TEXT_CHARS = 2_000_000


class ScrubRequest(BaseModel):
    text: str = Field(..., max_length=MAX_TEXT_CHARS, description="Text to de-identify")
    operator: Operator = Field(Operator.redact, description="redact | mask | surrogate | reversible")
    patient_key: str | None = Field(
        None, max_length=200, description="Stable patient id: consistent surrogates and date shift per patient"
    )


class SpanOut(BaseModel):
    start: int
    end: int
    label: str
    score: float
    detector: str


class ScrubResponse(BaseModel):
    text: str
    spans: list[SpanOut]
    operator: Operator
    counts: dict[str, int]
    mapping_id: str | None = Field(None, description="Reversible mode: id to re-identify with (admin)")


class ReidentifyRequest(BaseModel):
    mapping_id: str = Field(..., max_length=36)
    text: str = Field(..., max_length=MAX_TEXT_CHARS, description="Text holding reversible tokens")


class ReidentifyResponse(BaseModel):
    text: str
    replaced: int


@router.post("/scrub_phi", response_model=ScrubResponse)
async def scrub_phi(
    body: ScrubRequest,
    services: ServicesDep,
    session: SessionDep,
    audit: AuditDep,
    principal: ClinicianDep,
) -> ScrubResponse:
    agent = services.phi_agent()
    result = await run_in_threadpool(agent.scrub, body.text, operator=body.operator, patient_key=body.patient_key)
    mapping_id = None
    if body.operator is Operator.reversible:
        mapping_id = await services.phi_mappings.save(
            session, result.mapping, patient_ref=agent.patient_ref(body.patient_key), key_id=agent.key_id,
            created_by=principal.user_id,
            tenant=principal.tenant,
        )
    counts = result.counts()
    request_data: dict[str, Any] = {
        "characters": len(body.text),
        "operator": body.operator.value,
        "spans": len(result.spans),
        "counts": counts,
    }
    await audit.record(
        action="phi.scrub",
        resource_type="phi_mapping" if mapping_id else "text",
        resource_id=mapping_id,
        phi_accessed=True,
        request_data=request_data,
    )
    return ScrubResponse(
        text=result.text,
        spans=[SpanOut(**s.to_dict()) for s in result.spans],  # type: ignore[arg-type]
        operator=body.operator,
        counts=counts,
        mapping_id=mapping_id,
    )


@router.post("/scrub_phi/reidentify", response_model=ReidentifyResponse)
async def reidentify(
    body: ReidentifyRequest,
    services: ServicesDep,
    session: SessionDep,
    audit: AuditDep,
    principal: AdminDep,
) -> ReidentifyResponse:
    stored = await services.phi_mappings.load(session, body.mapping_id)
    missing = NotFound("no such PHI mapping", code="PHI_MAPPING_NOT_FOUND")
    if stored is None:
        raise missing
    access = authorize(principal, Owner(stored.created_by, stored.tenant), missing, Action.write)
    text, replaced = PhiAgent.reidentify(body.text, stored.mapping)
    await audit.record(
        action="phi.reidentify",
        resource_type="phi_mapping",
        resource_id=body.mapping_id,
        phi_accessed=True,
        request_data={"characters": len(body.text), "replaced": replaced},
        access=access,
    )
    return ReidentifyResponse(text=text, replaced=replaced)
