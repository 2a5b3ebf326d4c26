"""POST /scrub_phi, reversible mode with its encrypted mapping, audited re-identification, roles."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from sqlalchemy import select

from ai_med_extract.config import Settings
from ai_med_extract.db.phi import PhiMapping
from ai_med_extract.db.tables import AuditLog
from ai_med_extract.security.role import Role
from tests.support import running_app, wait_for_job

NOTE = "Seen by Dr. Gillan on 7/22/1995. Daughter Susan called 410-555-9876."


@pytest.fixture
async def phi_client(settings_factory: Callable[..., Settings]) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(settings_factory(phi={"ner": False})) as c:
        yield c


async def audit_rows(client: httpx.AsyncClient, action: str) -> list[AuditLog]:
    services = client.app.state.services  # type: ignore[attr-defined]
    async with services.sessionmaker() as session:
        rows = (await session.execute(select(AuditLog).where(AuditLog.action == action))).scalars().all()
    return list(rows)


async def test_scrub_phi_returns_scrubbed_text_and_spans(phi_client: httpx.AsyncClient) -> None:
    response = await phi_client.post("/scrub_phi", json={"text": NOTE})
    assert response.status_code == 200, response.text
    body = response.json()
    assert "Gillan" not in body["text"] and "[NAME]" in body["text"]
    labels = {NOTE[s["start"] : s["end"]]: s["label"] for s in body["spans"]}
    assert labels["Gillan"] == "NAME" and labels["7/22/1995"] == "DATE" and labels["410-555-9876"] == "PHONE"
    [row] = await audit_rows(phi_client, "phi.scrub")
    assert row.phi_accessed and row.request_data["characters"] == len(NOTE)
    assert "Gillan" not in str(row.request_data)


async def test_reversible_mode_round_trip_is_audited(phi_client: httpx.AsyncClient) -> None:
    response = await phi_client.post("/scrub_phi", json={"text": NOTE, "operator": "reversible", "patient_key": "p-1"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["mapping_id"] and "Gillan" not in body["text"]

    services = phi_client.app.state.services  # type: ignore[attr-defined]
    async with services.sessionmaker() as session:
        row = (await session.execute(select(PhiMapping))).scalar_one()
    assert b"Gillan" not in row.mapping_enc and row.patient_ref != "p-1"

    back = await phi_client.post("/scrub_phi/reidentify", json={"mapping_id": body["mapping_id"], "text": body["text"]})
    assert back.status_code == 200, back.text
    assert back.json()["text"] == NOTE
    [audit] = await audit_rows(phi_client, "phi.reidentify")
    assert audit.resource_id == body["mapping_id"] and audit.phi_accessed


async def test_reidentify_unknown_mapping_is_404(phi_client: httpx.AsyncClient) -> None:
    response = await phi_client.post(
        "/scrub_phi/reidentify", json={"mapping_id": "00000000-0000-0000-0000-000000000000", "text": "x"}
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "PHI_MAPPING_NOT_FOUND"


async def test_scrub_phi_rejects_an_unknown_operator(phi_client: httpx.AsyncClient) -> None:
    response = await phi_client.post("/scrub_phi", json={"text": NOTE, "operator": "shred"})
    assert response.status_code == 422


async def test_upload_pipeline_scrubs_the_document(phi_client: httpx.AsyncClient) -> None:
    response = await phi_client.post("/upload", files={"files": ("note.txt", NOTE.encode(), "text/plain")})
    assert response.status_code == 202, response.text
    job = await wait_for_job(phi_client, response.json()["job_id"])
    assert job["status"] == "completed", job
    [document] = job["result"]["documents"]
    assert "Gillan" not in document["phi"]["text"]
    assert document["phi"]["counts"]["NAME"] >= 2


async def test_only_an_admin_may_reidentify(settings_factory: Callable[..., Settings]) -> None:
    settings = settings_factory(phi={"ner": False}, security={"auth_enabled": True})
    async with running_app(settings) as client:
        services = client.app.state.services  # type: ignore[attr-defined]
        async with services.sessionmaker() as session, session.begin():
            _, clinician = await services.keys.create(session, name="clin", role=Role.clinician)
            _, admin = await services.keys.create(session, name="adm", role=Role.admin)
        scrubbed = await client.post(
            "/scrub_phi", json={"text": NOTE, "operator": "reversible"}, headers={"X-API-Key": clinician}
        )
        assert scrubbed.status_code == 200, scrubbed.text
        body = {"mapping_id": scrubbed.json()["mapping_id"], "text": scrubbed.json()["text"]}
        refused = await client.post("/scrub_phi/reidentify", json=body, headers={"X-API-Key": clinician})
        assert refused.status_code == 403
        allowed = await client.post("/scrub_phi/reidentify", json=body, headers={"X-API-Key": admin})
        assert allowed.status_code == 200 and allowed.json()["text"] == NOTE
