"""The upload pipeline keeps what earlier stages produced when a later stage fails on the input."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from ai_med_extract.agents.medical.extractor import ExtractorLimits, MedicalExtractor
from ai_med_extract.agents.phi.agent import PhiAgent
from ai_med_extract.agents.text import TextExtractionAgent
from ai_med_extract.config import ExtractionSettings
from ai_med_extract.errors import AppError
from ai_med_extract.jobs.context import JobContext, StoredFile
from ai_med_extract.jobs.document import DocumentResult
from ai_med_extract.jobs.pipeline import DocumentPipeline
from ai_med_extract.jobs.upload import build_upload_pipeline
from ai_med_extract.storage.cipher import Cipher
from ai_med_extract.storage.files import FileStore
from tests.conftest import TEST_ENCRYPTION_KEY
from tests.fixtures import documents as docs

NOTE = [
    "Patient John Carter was seen in clinic today.",
    "He reports chest pain on exertion for two weeks.",
    "Metformin 500 mg twice daily is continued.",
]


def pipeline(medical: MedicalExtractor) -> DocumentPipeline:
    text = TextExtractionAgent(ExtractionSettings(), max_bytes=20 * 1024 * 1024)
    return build_upload_pipeline(text, PhiAgent(b"k" * 32, ner=False), medical)


async def run_job(
    tmp_path: Path, handler: DocumentPipeline, data: bytes, options: dict[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    store = FileStore(tmp_path, Cipher.from_secret(TEST_ENCRYPTION_KEY))
    store.put("doc-1", data)
    file = StoredFile(
        document_id="doc-1", position=0, media_type=None, size=len(data), sha256="", storage_key="doc-1",
        store=store, options=options or {},
    )  # fmt: skip
    saved: dict[str, dict[str, Any]] = {}

    async def emit(event: str, payload: dict[str, Any]) -> None:
        return None

    async def save(document_id: str, result: dict[str, Any]) -> None:
        saved[document_id] = result

    with ThreadPoolExecutor(2) as executor:
        ctx = JobContext(
            job_id="job-1", kind="upload", options=options or {}, files=[file], payload=None,
            executor=executor, loop=asyncio.get_running_loop(), emit=emit, save_document=save,
        )  # fmt: skip
        result = await handler(ctx)
    return result, saved


async def test_text_and_deidentified_copy_survive_a_failing_medical_stage(tmp_path: Path) -> None:
    # A medical extractor capped far below the note's length really refuses this input.
    capped = MedicalExtractor(limits=ExtractorLimits(max_chars=40))
    result, saved = await run_job(tmp_path, pipeline(capped), docs.text_pdf([NOTE]))

    [document] = result["documents"]
    assert document["text"] == "\n".join(NOTE)
    assert "John Carter" not in document["phi"]["text"] and "chest pain" in document["phi"]["text"]
    assert "medical" not in document
    assert document["stages"] == [
        {"stage": "extract_text", "status": "succeeded", "code": None, "message": None},
        {"stage": "scrub_phi", "status": "succeeded", "code": None, "message": None},
        {
            "stage": "extract_medical",
            "status": "failed",
            "code": "MEDICAL_TEXT_TOO_LONG",
            "message": "text too long for medical extraction",
        },
    ]
    assert saved["doc-1"] == document


async def test_failed_deidentification_skips_medical_extraction_but_keeps_the_text(tmp_path: Path) -> None:
    result, _ = await run_job(
        tmp_path, pipeline(MedicalExtractor()), docs.text_pdf([NOTE]), options={"phi_operator": "shred"}
    )

    [document] = result["documents"]
    assert document["text"] == "\n".join(NOTE)
    assert "phi" not in document and "medical" not in document
    assert [(s["stage"], s["status"], s["code"]) for s in document["stages"]] == [
        ("extract_text", "succeeded", None),
        ("scrub_phi", "failed", "INTERNAL_ERROR"),
        ("extract_medical", "skipped", "STAGE_SKIPPED"),
    ]
    assert "shred" not in str(document["stages"])


async def test_all_stages_succeeding_are_reported(tmp_path: Path) -> None:
    result, _ = await run_job(tmp_path, pipeline(MedicalExtractor()), docs.text_pdf([NOTE]))

    [document] = result["documents"]
    assert [s["status"] for s in document["stages"]] == ["succeeded"] * 3
    assert document["medical"]["counts"]["medications"] == 1


async def test_a_document_without_text_still_fails_the_job(tmp_path: Path) -> None:
    with pytest.raises(AppError) as caught:
        await run_job(tmp_path, pipeline(MedicalExtractor()), docs.text_pdf([["x"]])[:250])

    assert caught.value.code == "CORRUPT_PDF"


async def test_a_stored_document_reads_back_as_the_same_record_and_prefers_its_deidentified_text(
    tmp_path: Path,
) -> None:
    result, saved = await run_job(tmp_path, pipeline(MedicalExtractor()), docs.text_pdf([NOTE]))

    stored = saved["doc-1"]
    document = DocumentResult.from_dict(stored)
    assert document.to_dict() == stored
    assert document.phi is not None and document.best_text() == stored["phi"]["text"]
    assert "John Carter" not in (document.best_text() or "")
    assert document.medical is not None and document.medical.source == "phi.text"
    assert document.fhir == stored["medical"]["fhir"]


async def test_without_scrubbing_the_extracted_text_is_the_best_text(tmp_path: Path) -> None:
    _, saved = await run_job(tmp_path, pipeline(MedicalExtractor()), docs.text_pdf([NOTE]), options={"scrub": False})

    document = DocumentResult.from_dict(saved["doc-1"])
    assert document.phi is None and document.best_text() == "\n".join(NOTE)
    assert saved["doc-1"]["medical"]["source"] == "text"
