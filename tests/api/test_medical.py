"""POST /extract_medical_data, GET /get_updated_medical_data, PUT /update_medical_data: versions,
409 on a stale version, grounding of corrections, encryption at rest and the audit trail."""

from __future__ import annotations

import copy

import httpx
from sqlalchemy import select

from ai_med_extract.db.medical import MedicalRecord, MedicalRecordVersion
from ai_med_extract.db.tables import AuditLog
from tests.support import wait_for_job

NOTE = (
    "HPI: 61 yo with hypertension and type 2 diabetes. Denies chest pain.\n"
    "Medications: metformin 500 mg PO BID, lisinopril 10 mg daily\n"
    "Allergies: penicillin (hives)\n"
    "Vitals: BP 150/92, HR 88\n"
    "Labs: potassium 5.8 mmol/L (H)\n"
)


async def audit_rows(client: httpx.AsyncClient, action: str) -> list[AuditLog]:
    services = client.app.state.services  # type: ignore[attr-defined]
    async with services.sessionmaker() as session:
        rows = (await session.execute(select(AuditLog).where(AuditLog.action == action))).scalars().all()
    return list(rows)


async def extract(client: httpx.AsyncClient, **body: object) -> dict:
    response = await client.post("/extract_medical_data", json={"text": NOTE, **body})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_extraction_from_text_is_stored_as_version_one_with_a_fhir_bundle(client: httpx.AsyncClient) -> None:
    body = await extract(client)
    assert body["version"] == 1 and body["latest_version"] == 1 and body["mode"] == "rules"
    data = body["data"]
    assert {m["name"] for m in data["medications"]} == {"metformin", "lisinopril"}
    assert [p["context"]["negated"] for p in data["problems"] if p["name"] == "chest pain"] == [True]
    assert body["counts"]["allergies"] == 1 and body["counts"]["vitals"] == 2
    for item in [*data["problems"], *data["medications"], *data["labs"], *data["vitals"], *data["allergies"]]:
        assert NOTE[item["start"] : item["end"]] == item["text"]
    kinds = {e["resource"]["resourceType"] for e in body["fhir"]["entry"]}
    assert {"Condition", "MedicationStatement", "Observation", "AllergyIntolerance"} <= kinds
    assert [v["version"] for v in body["history"]] == [1]

    [row] = await audit_rows(client, "medical.extract")
    assert row.phi_accessed and row.resource_id == body["record_id"]
    assert row.request_data["characters"] == len(NOTE) and "metformin" not in str(row.request_data)


async def test_stored_record_is_encrypted_at_rest(client: httpx.AsyncClient) -> None:
    body = await extract(client)
    services = client.app.state.services  # type: ignore[attr-defined]
    async with services.sessionmaker() as session:
        record = await session.get(MedicalRecord, body["record_id"])
        versions = (await session.execute(select(MedicalRecordVersion))).scalars().all()
    assert record is not None and b"metformin" not in record.data_enc and b"metformin" not in record.source_enc
    assert all(b"metformin" not in v.data_enc for v in versions)


async def test_get_returns_the_latest_version_and_is_audited(client: httpx.AsyncClient) -> None:
    created = await extract(client)
    response = await client.get("/get_updated_medical_data", params={"record_id": created["record_id"]})
    assert response.status_code == 200, response.text
    assert response.json()["data"] == created["data"]
    [row] = await audit_rows(client, "medical.read")
    assert row.resource_id == created["record_id"] and row.phi_accessed


async def test_update_creates_a_new_version_and_keeps_the_history(client: httpx.AsyncClient) -> None:
    created = await extract(client)
    corrected = copy.deepcopy(created["data"])
    corrected["medications"][0]["frequency"] = "TID"
    corrected["problems"] = [p for p in corrected["problems"] if p["name"] != "chest pain"]
    response = await client.put(
        "/update_medical_data", json={"record_id": created["record_id"], "version": 1, "data": corrected}
    )
    assert response.status_code == 200, response.text
    assert response.json()["version"] == 2

    latest = (await client.get("/get_updated_medical_data", params={"record_id": created["record_id"]})).json()
    assert latest["version"] == 2 and latest["data"]["medications"][0]["frequency"] == "TID"
    assert [v["version"] for v in latest["history"]] == [1, 2]
    assert [v["reason"] for v in latest["history"]] == ["extraction", "correction"]
    first = (
        await client.get("/get_updated_medical_data", params={"record_id": created["record_id"], "version": 1})
    ).json()
    assert first["version"] == 1 and first["latest_version"] == 2 and first["data"] == created["data"]
    [row] = await audit_rows(client, "medical.update")
    assert row.request_data["from_version"] == 1 and row.request_data["version"] == 2


async def test_update_on_a_stale_version_answers_409(client: httpx.AsyncClient) -> None:
    created = await extract(client)
    payload = {"record_id": created["record_id"], "version": 1, "data": created["data"]}
    assert (await client.put("/update_medical_data", json=payload)).status_code == 200
    stale = await client.put("/update_medical_data", json=payload)
    assert stale.status_code == 409
    error = stale.json()["error"]
    assert error["code"] == "MEDICAL_VERSION_CONFLICT"
    assert error["details"] == {"expected_version": 1, "current_version": 2}


async def test_update_refuses_items_whose_offsets_do_not_match_the_source(client: httpx.AsyncClient) -> None:
    created = await extract(client)
    data = created["data"]
    data["medications"][0]["start"] += 1
    response = await client.put(
        "/update_medical_data", json={"record_id": created["record_id"], "version": 1, "data": data}
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "MEDICAL_ITEM_NOT_GROUNDED"


async def test_update_accepts_an_item_added_by_a_clinician(client: httpx.AsyncClient) -> None:
    created = await extract(client)
    data = created["data"]
    data["problems"].append(
        {"id": "problem-99", "text": "", "start": 0, "end": 0, "detector": "clinician", "name": "obesity"}
    )
    response = await client.put(
        "/update_medical_data", json={"record_id": created["record_id"], "version": 1, "data": data}
    )
    assert response.status_code == 200, response.text
    assert response.json()["counts"]["problems"] == len(data["problems"])


async def test_unknown_record_answers_404(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/get_updated_medical_data", params={"record_id": "00000000-0000-0000-0000-000000000000"}
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "MEDICAL_RECORD_NOT_FOUND"


async def test_text_and_document_id_together_are_refused(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/extract_medical_data", json={"text": NOTE, "document_id": "00000000-0000-0000-0000-000000000000"}
    )
    assert response.status_code == 422


async def test_processed_document_is_extracted_by_the_pipeline_and_by_id(client: httpx.AsyncClient) -> None:
    upload = await client.post("/upload", files={"files": ("note.txt", NOTE.encode(), "text/plain")})
    assert upload.status_code == 202, upload.text
    job = await wait_for_job(client, upload.json()["job_id"])
    assert job["status"] == "completed", job
    [document] = job["result"]["documents"]
    medical = document["medical"]
    assert medical["counts"]["medications"] == 2
    source = document["phi"]["text"] if medical["source"] == "phi.text" else document["text"]
    assert all(source[m["start"] : m["end"]] == m["text"] for m in medical["medications"])
    bundle = medical["fhir"]
    assert bundle["resourceType"] == "Bundle"
    kinds = [entry["resource"]["resourceType"] for entry in bundle["entry"]]
    assert kinds.count("MedicationStatement") == 2

    body = await extract(client, text=None, document_id=document["document_id"])
    assert body["document_id"] == document["document_id"]
    assert {m["name"] for m in body["data"]["medications"]} == {"metformin", "lisinopril"}
    by_document = await client.get(
        "/get_updated_medical_data", params={"document_id": document["document_id"]}
    )
    assert by_document.status_code == 200 and by_document.json()["record_id"] == body["record_id"]


async def test_the_fhir_bundle_is_served_alone_as_fhir_json_and_audited(client: httpx.AsyncClient) -> None:
    from ai_med_extract.agents.medical.fhir import validate_r4

    created = await extract(client)
    response = await client.get(f"/medical/{created['record_id']}/fhir")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    bundle = response.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"
    validate_r4(bundle)
    [row] = await audit_rows(client, "medical.read")
    assert row.resource_id == created["record_id"] and row.phi_accessed and row.request_data["format"] == "fhir"
    assert "metformin" not in str(row.request_data)


async def test_the_fhir_bundle_of_an_unknown_record_or_version_answers_404(client: httpx.AsyncClient) -> None:
    missing = await client.get("/medical/00000000-0000-0000-0000-000000000000/fhir")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "MEDICAL_RECORD_NOT_FOUND"
    created = await extract(client)
    old = await client.get(f"/medical/{created['record_id']}/fhir", params={"version": 9})
    assert old.status_code == 404 and old.json()["error"]["code"] == "MEDICAL_VERSION_NOT_FOUND"
