"""Speech to text: ``POST /transcribe``.

Audio up to ``ExtractionSettings.transcribe_inline_max_s`` long is transcribed in the request and
answered with 200 (text, timed segments, metadata). Longer audio, or any audio with
``background=true``, becomes a job (202 with ``job_id`` and its SSE ``events`` URL): the upload
pipeline with PHI scrubbing and medical extraction switched off, reporting progress per 30-s chunk.
Audio longer than ``max_audio_seconds`` is refused with 422 ``AUDIO_TOO_LONG`` before any job exists.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.concurrency import run_in_threadpool

from ai_med_extract.agents.text import DocumentKind
from ai_med_extract.agents.text.audio import SAMPLE_RATE, decode_audio
from ai_med_extract.api.deps import Audit, AuditDep, ClinicianDep, ServicesDep, SessionDep
from ai_med_extract.api.responses import job_accepted
from ai_med_extract.errors import BadRequest, UnsupportedMediaType
from ai_med_extract.jobs.service import IncomingFile
from ai_med_extract.security.keys import Principal
from ai_med_extract.services import Services

router = APIRouter(tags=["transcription"])


@router.post("/transcribe", response_model=None)
async def transcribe(
    services: ServicesDep,
    session: SessionDep,
    audit: AuditDep,
    principal: ClinicianDep,
    file: Annotated[UploadFile, File(description="Audio: WAV, MP3, M4A, FLAC, OGG ...")],
    background: Annotated[bool, Form(description="Always answer with a job, whatever the length")] = False,
) -> dict[str, Any] | JSONResponse:
    agent = services.text_agent()
    settings = services.settings
    data = await services.jobs.read_file(file)
    if not data:
        raise BadRequest("the file is empty", code="EMPTY_FILE")
    detected = await run_in_threadpool(agent.detect, data)
    if detected.kind is not DocumentKind.audio:
        raise UnsupportedMediaType(
            "the file is not audio", code="NOT_AUDIO", details={"detected": detected.media_type}
        )
    samples = await run_in_threadpool(
        decode_audio,
        data,
        detected.media_type,
        max_seconds=settings.extraction.max_audio_seconds,
        timeout_s=settings.extraction.audio_decode_timeout_s,
    )
    duration = samples.size / SAMPLE_RATE
    del samples
    if background or duration > settings.extraction.transcribe_inline_max_s:
        return await _as_job(services, session, audit, principal, data, detected.media_type, file, duration)

    result = await agent.extract(data, run=run_in_threadpool)
    await audit.record(
        action="audio.transcribe",
        resource_type="audio",
        resource_id=result.metadata.sha256[:16],
        request_data={
            "bytes": len(data),
            "media_type": detected.media_type,
            "duration_s": round(duration, 2),
            "segments": len(result.segments),
        },
    )
    return {
        "text": result.text,
        "segments": [s.model_dump(mode="json") for s in result.segments],
        "confidence": result.confidence,
        "metadata": result.metadata.model_dump(mode="json"),
        "warnings": result.warnings,
    }


async def _as_job(
    services: Services,
    session: AsyncSession,
    audit: Audit,
    principal: Principal,
    data: bytes,
    media_type: str,
    file: UploadFile,
    duration: float,
) -> JSONResponse:
    submitted = await services.jobs.submit(
        session,
        audit,
        kind="upload",
        created_by=principal.user_id,
        tenant=principal.tenant,
        files=[IncomingFile(data=data, media_type=media_type, filename=file.filename)],
        options={"scrub": False, "extract": False, "needs_secret": False},
        action="audio.transcribe",
        request_data={"bytes": len(data), "media_type": media_type, "duration_s": round(duration, 2)},
    )
    return job_accepted(submitted, {"duration_s": round(duration, 2)})
