"""POST /generate_patient_summary and POST /generate_soap_note: jobs on the shared runner, SSE progress
and streamed tokens, 422 for malformed records, cache hits, audit rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from ai_med_extract.agents.summary import PatientSummaryAgent
from ai_med_extract.agents.summary.job import SummaryJob
from ai_med_extract.config import ModelSettings, SummarySettings
from ai_med_extract.db.tables import AuditLog
from ai_med_extract.inference.catalogue import Catalogue
from ai_med_extract.inference.pool import ModelPool
from tests.agents.summary.synthetic import make_bundle
from tests.inference.tiny_models import write_tiny_gguf
from tests.support import parse_sse, wait_for_job

SMALL = SummarySettings(chunk_max_tokens=16, narrative_max_tokens=24, assessment_max_tokens=16, token_flush_s=0)


@pytest.fixture(scope="module")
def bundle() -> dict[str, Any]:
    return make_bundle(seed=21, years=3)[0]


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("summary-api") / "tiny.gguf", context_length=1024)


@pytest.fixture
async def with_model(client: httpx.AsyncClient, tiny_gguf: Path, tmp_path: Path) -> ModelPool:
    """The app's summary job and agent on a real pool holding a tiny random-weight model."""
    catalogue = Catalogue.from_dict({
        "default_model": "tiny",
        "patient_summary_models": [{"name": "tiny", "type": "gguf", "path": str(tiny_gguf), "n_ctx": 1024,
                                    "options": {"n_batch": 64}}],
        "runtime_behavior": {"text_fallback": False},
    }, base_dir=tmp_path)
    pool = ModelPool(catalogue, settings=ModelSettings(cache_dir=tmp_path / "models", n_threads=2))
    services = client.app.state.services  # type: ignore[attr-defined]
    agent = PatientSummaryAgent(pool, SMALL)
    services.agents.summary = agent
    services.agents.pool = pool
    services.runner.register("summary", SummaryJob(agent, SMALL))
    yield pool
    await pool.close()


async def audit_rows(client: httpx.AsyncClient, action: str) -> list[AuditLog]:
    services = client.app.state.services  # type: ignore[attr-defined]
    async with services.sessionmaker() as session:
        return list((await session.execute(select(AuditLog).where(AuditLog.action == action))).scalars().all())


async def test_summary_job_streams_progress_and_tokens_then_completes(
    client: httpx.AsyncClient, with_model: ModelPool, bundle: dict[str, Any]
) -> None:
    response = await client.post("/generate_patient_summary", json={"patient_data": bundle, "model": "tiny"})
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    job = await wait_for_job(client, job_id)
    assert job["status"] == "completed", job
    events = parse_sse((await client.get(f"/job/{job_id}/events")).text)
    kinds = [e["event"] for e in events]
    assert kinds[-1] == "complete"
    tokens = [e["data"] for e in events if e["event"] == "token"]
    assert tokens and {t["section"] for t in tokens} >= {"narrative", "assessment"}
    # tokens arrived while the job ran: between progress events, before the terminal event
    first_token = kinds.index("token")
    assert "progress" in kinds[:first_token] and "progress" in kinds[first_token:]
    summary = job["result"]["summary"]
    assert summary["generation"]["generator"] == "model" and summary["generation"]["model"] == "tiny"
    assert list(summary["sections"]) == ["overview", "active_problems", "medications", "allergies", "vitals_labs",
                                         "narrative", "assessment", "guideline_checks"]
    assert summary["markdown"].startswith("# Patient summary")
    [row] = await audit_rows(client, "summary.generate")
    assert row.resource_id == job_id and row.phi_accessed
    assert row.request_data["input_kind"] == "fhir_bundle" and row.request_data["ignored"] > 0
    assert "entry" not in json.dumps(row.request_data)  # metadata only


async def test_malformed_fhir_is_422_naming_the_place_and_queues_nothing(
    client: httpx.AsyncClient, bundle: dict[str, Any]
) -> None:
    broken = json.loads(json.dumps(bundle))
    broken["entry"][0]["resource"]["birthDate"] = "born-long-ago"
    response = await client.post("/generate_patient_summary", json={"patient_data": broken})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "FHIR_INVALID"
    assert error["details"]["errors"][0]["loc"] == "entry[0].resource(Patient).birthDate"
    assert "born-long-ago" not in response.text
    assert await audit_rows(client, "summary.generate") == []


async def test_same_record_model_and_options_twice_is_served_from_the_cache(
    client: httpx.AsyncClient, bundle: dict[str, Any]
) -> None:
    results = []
    for _ in range(2):
        response = await client.post("/generate_patient_summary",
                                     json={"patient_data": bundle, "model": "template", "deidentify": True})
        assert response.status_code == 202
        results.append((await wait_for_job(client, response.json()["job_id"]))["result"]["summary"])
    assert results[0]["cached"] is False and results[1]["cached"] is True
    assert results[0]["markdown"] == results[1]["markdown"]
    assert results[0]["generation"]["generator"] == "template"
    assert "name" not in results[0]["overview"]


async def test_documents_of_a_finished_upload_job_can_be_summarised(client: httpx.AsyncClient) -> None:
    note = "Clinic visit 2024-02-02. Type 2 diabetes. HbA1c 8.1%. Started metformin 500 mg.\n"
    upload = await client.post("/upload", files={"files": ("n.txt", note.encode(), "text/plain")},
                               data={"extract": "false"})
    upload_job = await wait_for_job(client, upload.json()["job_id"])
    assert upload_job["status"] == "completed"
    response = await client.post("/generate_patient_summary",
                                 json={"job_id": upload_job["job_id"], "model": "template"})
    assert response.status_code == 202, response.text
    summary = (await wait_for_job(client, response.json()["job_id"]))["result"]["summary"]
    assert summary["input"]["kind"] == "documents"
    assert any("metformin" in s["text"].lower() for s in summary["sections"]["medications"]["statements"])


async def test_unknown_model_is_refused_before_a_job_is_created(
    client: httpx.AsyncClient, with_model: ModelPool, bundle: dict[str, Any]
) -> None:
    response = await client.post("/generate_patient_summary", json={"patient_data": bundle, "model": "nope"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "MODEL_NOT_FOUND"


async def test_bad_requests_are_4xx_with_codes(client: httpx.AsyncClient) -> None:
    assert (await client.post("/generate_patient_summary", json={})).json()["error"]["code"] == "RECORD_MISSING"
    response = await client.post("/generate_patient_summary", content=b"{not json",
                                 headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "INVALID_JSON"
    response = await client.post("/generate_patient_summary", json={"patient_data": {"x": 1}, "grounding": "maybe"})
    assert response.status_code == 422 and response.json()["error"]["code"] == "REQUEST_INVALID"


async def test_soap_note_from_a_transcript_has_four_grounded_sections(client: httpx.AsyncClient) -> None:
    transcript = {"segments": [
        {"start_s": 0.0, "end_s": 3.0, "text": "Patient: I have had headaches for two weeks."},
        {"start_s": 3.0, "end_s": 6.0, "text": "Doctor: Your blood pressure is 162/98 today."},
        {"start_s": 6.0, "end_s": 9.0, "text": "Doctor: This is uncontrolled hypertension."},
        {"start_s": 9.0, "end_s": 12.0, "text": "Doctor: I will increase lisinopril to 20 mg daily."},
    ]}
    response = await client.post("/generate_soap_note", json={"transcript": transcript, "model": "template"})
    assert response.status_code == 202, response.text
    note = (await wait_for_job(client, response.json()["job_id"]))["result"]["soap_note"]
    assert [s["text"] for s in note["plan"]] == ["I will increase lisinopril to 20 mg daily."]
    assert note["objective"][0]["citations"] and note["assessment"]
    assert "## Subjective" in note["markdown"]
    assert await audit_rows(client, "summary.soap")
