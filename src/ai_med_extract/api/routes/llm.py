"""Model management and text generation endpoints (the architecture document's).

``POST /api/load_model``, ``GET /api/model_info``, ``POST /api/switch_model`` manage the model pool;
``POST /api/generate_summary`` (JSON, or SSE when asked) and ``POST /api/patient_summary_openvino``
summarise clinical text and are audited. Responses report every fallback the pool took.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field, model_validator
from sse_starlette.sse import EventSourceResponse, ServerSentEvent

from ai_med_extract.agents.summary.free_text import (
    openvino_model,
    record_as_text,
    stream_summary,
    summarize_text,
)
from ai_med_extract.api.deps import AdminDep, Audit, AuditDep, ClinicianDep, ReaderDep, ServicesDep
from ai_med_extract.api.sse import error_event, sse_event, sse_response
from ai_med_extract.errors import ServiceUnavailable
from ai_med_extract.inference.pool import ModelPool
from ai_med_extract.inference.types import Fallback, GenerationResult

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api", tags=["models"])

MAX_TEXT_CHARS = 200_000


def get_pool(services: ServicesDep) -> ModelPool:
    pool = services.pool
    if pool is None:
        raise ServiceUnavailable("the model pool is not configured", code="MODEL_POOL_UNAVAILABLE")
    return pool


PoolDep = Annotated[ModelPool, Depends(get_pool)]


class ModelChoice(BaseModel):
    model_name: str = Field(min_length=1, max_length=200, description="A name from models_config.json")


class SummaryRequest(BaseModel):
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS, description="Clinical text to summarise")
    model_name: str | None = Field(None, max_length=200, description="Model (default: the pool's default)")
    max_tokens: int = Field(256, ge=1, le=4096)
    temperature: float = Field(0.2, ge=0.0, le=2.0)
    stream: bool = Field(False, description="Stream tokens as server-sent events")


class PatientSummaryRequest(BaseModel):
    text: str | None = Field(None, max_length=MAX_TEXT_CHARS, description="Clinical text")
    patient_data: dict[str, Any] | list[Any] | None = Field(None, description="Structured patient record")
    model_name: str | None = Field(None, max_length=200, description="Model (default: the OpenVINO one)")
    max_tokens: int = Field(384, ge=1, le=4096)
    temperature: float = Field(0.2, ge=0.0, le=2.0)

    @model_validator(mode="after")
    def _needs_input(self) -> PatientSummaryRequest:
        if not self.text and not self.patient_data:
            raise ValueError("give text or patient_data")
        return self


def _fallbacks(items: tuple[Fallback, ...] | list[Fallback]) -> list[dict[str, str]]:
    return [asdict(f) for f in items]


def _result_body(result: GenerationResult) -> dict[str, Any]:
    return {
        "summary": result.text.strip(),
        "model": result.model,
        "backend": result.backend,
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "duration_s": round(result.duration_s, 3),
        "finish_reason": result.finish_reason,
        "fallbacks": _fallbacks(result.fallbacks),
    }


def wants_stream(request: Request, asked: bool) -> bool:
    return asked or "text/event-stream" in request.headers.get("accept", "")


@router.post("/load_model")
async def load_model(body: ModelChoice, pool: PoolDep, _admin: AdminDep) -> dict[str, Any]:
    return {"model": await pool.load(body.model_name)}


@router.get("/model_info")
async def model_info(
    pool: PoolDep,
    _reader: ReaderDep,
    model_name: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    if model_name:
        return {"model": pool.describe_model(model_name)}
    return pool.info()


@router.post("/switch_model")
async def switch_model(body: ModelChoice, pool: PoolDep, _admin: AdminDep) -> dict[str, Any]:
    info = await pool.switch(body.model_name)
    return {"default_model": pool.default_model, "speech_model": pool.speech_model, "model": info}


async def _sse(
    pool: ModelPool, body: SummaryRequest, request: Request, audit: Audit, action: str
) -> AsyncIterator[ServerSentEvent]:
    fallbacks: list[Fallback] = []
    reported = 0
    pieces = 0
    status, code = 200, None
    stream = stream_summary(
        pool, body.text, model=body.model_name, max_tokens=body.max_tokens, temperature=body.temperature,
        fallbacks=fallbacks,
    )
    try:
        async for piece in stream:
            for item in fallbacks[reported:]:
                yield sse_event("fallback", asdict(item))
            reported = len(fallbacks)
            pieces += 1
            yield sse_event("token", {"text": piece})
            if pieces % 16 == 0 and await request.is_disconnected():
                return
        for item in fallbacks[reported:]:
            yield sse_event("fallback", asdict(item))
        yield sse_event("done", {"pieces": pieces, "fallbacks": _fallbacks(fallbacks)})
    except Exception as exc:  # the response has started: report a code, never the exception text
        status, code, event = error_event(exc, logger=logger, what="generation")
        yield event
    finally:
        await stream.aclose()
        await audit.outcome(
            action=action, response_status=status, error_message=code,
            request_data={"pieces": pieces, "fallbacks": len(fallbacks)},
        )


@router.post("/generate_summary", response_model=None)
async def generate_summary(
    body: SummaryRequest,
    request: Request,
    pool: PoolDep,
    audit: AuditDep,
    _clinician: ClinicianDep,
) -> dict[str, Any] | EventSourceResponse:
    streaming = wants_stream(request, body.stream)
    # intent and outcome in short transactions of their own: the generation holds no audit lock
    await audit.intent(
        action="summary.generate",
        resource_type="clinical_text",
        phi_accessed=True,
        request_data={
            "chars": len(body.text),
            "model": body.model_name or pool.default_model,
            "max_tokens": body.max_tokens,
            "stream": streaming,
        },
    )
    if streaming:
        return sse_response(_sse(pool, body, request, audit, "summary.generate"))
    result = await summarize_text(
        pool, body.text, model=body.model_name, max_tokens=body.max_tokens, temperature=body.temperature
    )
    await audit.outcome(action="summary.generate", request_data=_outcome_data(result))
    return _result_body(result)


def _outcome_data(result: GenerationResult) -> dict[str, Any]:
    return {"model": result.model, "completion_tokens": result.completion_tokens, "fallbacks": len(result.fallbacks)}


@router.post("/patient_summary_openvino")
async def patient_summary_openvino(
    body: PatientSummaryRequest,
    pool: PoolDep,
    audit: AuditDep,
    _clinician: ClinicianDep,
) -> dict[str, Any]:
    text = body.text or record_as_text(body.patient_data or {})
    model = body.model_name or openvino_model(pool)
    await audit.intent(
        action="summary.patient_openvino",
        resource_type="patient_record",
        phi_accessed=True,
        request_data={
            "chars": len(text),
            "structured": body.patient_data is not None,
            "model": model or pool.default_model,
            "max_tokens": body.max_tokens,
        },
    )
    result = await summarize_text(pool, text, model=model, max_tokens=body.max_tokens, temperature=body.temperature)
    await audit.outcome(action="summary.patient_openvino", request_data=_outcome_data(result))
    return _result_body(result)
