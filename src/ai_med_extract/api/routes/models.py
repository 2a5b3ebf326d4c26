"""Model management and text generation endpoints (the architecture document's).

``POST /api/load_model``, ``GET /api/model_info``, ``POST /api/switch_model`` manage the model pool;
``POST /api/generate_summary`` (JSON, or SSE when asked) and ``POST /api/patient_summary_openvino``
summarise clinical text and are audited. Responses report every fallback the pool took.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field, model_validator
from sse_starlette.sse import EventSourceResponse, ServerSentEvent

from ai_med_extract.api.deps import AdminDep, Audit, AuditDep, ClinicianDep, ReaderDep, ServicesDep
from ai_med_extract.errors import AppError, ServiceUnavailable
from ai_med_extract.inference.catalogue import ModelType
from ai_med_extract.inference.pool import ModelPool
from ai_med_extract.inference.types import ChatMessage, Fallback, GenerationRequest, GenerationResult

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api", tags=["models"])

SUMMARY_INSTRUCTIONS = (
    "You are a clinical documentation assistant. Summarise the clinical text for a clinician: "
    "presenting problem, diagnoses, treatments, key results and follow-up. Use only facts stated in the "
    "text; do not invent values. Write plain sentences."
)
MAX_TEXT_CHARS = 200_000


def get_pool(services: ServicesDep) -> ModelPool:
    pool = services.pool
    if pool is None:
        raise ServiceUnavailable("the model pool is not configured", code="MODEL_POOL_UNAVAILABLE")
    return pool  # type: ignore[no-any-return]


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


def _summary_request(text: str, model: str | None, max_tokens: int, temperature: float) -> GenerationRequest:
    return GenerationRequest(
        messages=(ChatMessage("system", SUMMARY_INSTRUCTIONS), ChatMessage("user", text)),
        model=model,
        max_tokens=max_tokens,
        temperature=temperature,
    )


def _record_as_text(data: dict[str, Any] | list[Any]) -> str:
    """A structured record as indented ``key: value`` lines the models read well."""
    lines: list[str] = []

    def walk(value: Any, indent: int, label: str | None) -> None:
        pad = "  " * indent
        if isinstance(value, dict):
            if label:
                lines.append(f"{pad}{label}:")
            for key, item in value.items():
                walk(item, indent + (1 if label else 0), str(key))
        elif isinstance(value, list):
            if label:
                lines.append(f"{pad}{label}:")
            for item in value:
                if isinstance(item, dict | list):
                    walk(item, indent + 1, None)
                else:
                    lines.append(f"{pad}  - {item}")
        else:
            lines.append(f"{pad}{label}: {value}" if label else f"{pad}{value}")

    walk(data, 0, None)
    return "\n".join(lines)


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
    pool: ModelPool, req: GenerationRequest, request: Request, audit: Audit, action: str
) -> AsyncIterator[ServerSentEvent]:
    fallbacks: list[Fallback] = []
    reported = 0
    pieces = 0
    status, code = 200, None
    stream = pool.stream(req, fallbacks=fallbacks)
    try:
        async for piece in stream:
            for item in fallbacks[reported:]:
                yield ServerSentEvent(json.dumps(asdict(item)), event="fallback")
            reported = len(fallbacks)
            pieces += 1
            yield ServerSentEvent(json.dumps({"text": piece}), event="token")
            if pieces % 16 == 0 and await request.is_disconnected():
                return
        for item in fallbacks[reported:]:
            yield ServerSentEvent(json.dumps(asdict(item)), event="fallback")
        yield ServerSentEvent(
            json.dumps({"pieces": pieces, "fallbacks": _fallbacks(fallbacks)}), event="done"
        )
    except AppError as exc:
        status, code = exc.status_code, exc.code
        yield ServerSentEvent(json.dumps({"code": exc.code, "message": exc.message}), event="error")
    except Exception as exc:  # the response has started: report a code, never the exception text
        status, code = 500, "INTERNAL_ERROR"
        logger.error("summary stream failed", extra={"error_type": type(exc).__name__})
        yield ServerSentEvent(
            json.dumps({"code": "INTERNAL_ERROR", "message": "generation failed"}), event="error"
        )
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
    req = _summary_request(body.text, body.model_name, body.max_tokens, body.temperature)
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
        return EventSourceResponse(_sse(pool, req, request, audit, "summary.generate"), ping=15, send_timeout=30)
    result = await pool.generate(req)
    await audit.outcome(action="summary.generate", request_data=_outcome_data(result))
    return _result_body(result)


def _outcome_data(result: GenerationResult) -> dict[str, Any]:
    return {"model": result.model, "completion_tokens": result.completion_tokens, "fallbacks": len(result.fallbacks)}


def openvino_model(pool: ModelPool) -> str | None:
    entries = [e for e in pool.catalogue.patient_summary_models if e.type is ModelType.openvino]
    active = [e for e in entries if e.is_active]
    chosen = (active or entries)[:1]
    return chosen[0].name if chosen else None


@router.post("/patient_summary_openvino")
async def patient_summary_openvino(
    body: PatientSummaryRequest,
    pool: PoolDep,
    audit: AuditDep,
    _clinician: ClinicianDep,
) -> dict[str, Any]:
    text = body.text or _record_as_text(body.patient_data or {})
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
    result = await pool.generate(_summary_request(text, model, body.max_tokens, body.temperature))
    await audit.outcome(action="summary.patient_openvino", request_data=_outcome_data(result))
    return _result_body(result)
