"""Ownership and views: every route that returns or changes patient data, for every kind of caller.

One owner (a clinician) creates an upload job, a summary job, a medical record and a reversible PHI
mapping. Then each route is called by the owner, a second clinician and a reader of the same
(default) tenant, an admin without a tenant, and a clinician, a reader and an admin of another tenant.
The expected answers are the model of ``security.access``: others' resources are 404, a role below
the route's is 403, readers (and clinicians on others' data) get the de-identified view.
"""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from ai_med_extract.commands.service import _with_session
from ai_med_extract.config import Settings
from ai_med_extract.db.tables import AuditLog
from ai_med_extract.security.keyring import Keyring
from ai_med_extract.security.keys import KeyService
from ai_med_extract.security.role import Role
from ai_med_extract.storage.secrets import load_secrets
from tests.agents.summary.synthetic import make_bundle
from tests.conftest import TEST_ENCRYPTION_KEY, TEST_SECRET, _pg_execute, _pg_url
from tests.support import LiveServer, parse_sse

SSN = "123-45-6789"
NOTE = f"Patient SSN {SSN}. Type 2 diabetes. Started metformin 500 mg twice daily.\n"

# caller -> (role, tenant)
CALLERS: dict[str, tuple[Role, str | None]] = {
    "owner": (Role.clinician, None),
    "clinician_same_tenant": (Role.clinician, None),
    "reader_same_tenant": (Role.reader, None),
    "admin": (Role.admin, None),
    "clinician_other_tenant": (Role.clinician, "other"),
    "reader_other_tenant": (Role.reader, "other"),
    "admin_other_tenant": (Role.admin, "other"),
}
IDENTIFIED, DEIDENTIFIED = "identified", "deidentified"


@dataclass
class World:
    url: str
    tokens: dict[str, str]
    upload_job: str
    document_id: str
    summary_job: str
    patient_name: str
    record_id: str
    mapping_id: str
    reversible_text: str
    settings: Settings

    def client(self, caller: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"X-API-Key": self.tokens[caller]}, timeout=60)


def _wait(client: httpx.Client, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        body = client.get(f"/job/{job_id}").json()
        if body["status"] in ("completed", "failed", "cancelled"):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


def _make_keys(settings: Settings) -> dict[str, str]:
    service = KeyService(Keyring.from_secret(load_secrets(settings).secret_key))

    async def work(session: Any) -> dict[str, str]:
        out = {}
        for name, (role, tenant) in CALLERS.items():
            _, out[name] = await service.create(session, name=name, role=role, tenant=tenant)
        return out

    return asyncio.run(_with_session(settings, work))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    folder = tmp_path_factory.mktemp("ownership")
    cleanup = None
    if request.param == "sqlite":
        target = folder / "db.sqlite"
        shutil.copy(request.getfixturevalue("sqlite_template"), target)
        url = f"sqlite+aiosqlite:///{target}"
    else:
        template, dsn = request.getfixturevalue("pg_template"), request.getfixturevalue("postgres")
        name = f"ame_own_{uuid.uuid4().hex[:10]}"
        _pg_execute(f"CREATE DATABASE {name} TEMPLATE {template}")
        url = _pg_url(dsn, name)
        cleanup = name
    settings = Settings(
        _env_file=None,
        environment="test",
        database={"url": url},
        storage={"directory": str(folder / "storage"), "encryption_key": TEST_ENCRYPTION_KEY},
        security={"auth_enabled": True, "secret_key": TEST_SECRET, "rate_limit": {"enabled": False}},
        phi={"ner": False},
    )
    tokens = _make_keys(settings)
    bundle, truth = make_bundle(seed=5, years=1)
    with LiveServer(settings) as server, httpx.Client(
        base_url=server.url, headers={"X-API-Key": tokens["owner"]}, timeout=60
    ) as owner:
        upload = owner.post("/upload", files={"files": ("n.txt", NOTE.encode(), "text/plain")})
        assert upload.status_code == 202, upload.text
        job = _wait(owner, upload.json()["job_id"])
        assert job["status"] == "completed", job
        document_id = job["result"]["documents"][0]["document_id"]
        summary = owner.post("/generate_patient_summary", json={"patient_data": bundle, "model": "template"})
        assert summary.status_code == 202, summary.text
        assert _wait(owner, summary.json()["job_id"])["status"] == "completed"
        record = owner.post("/extract_medical_data", json={"text": NOTE})
        assert record.status_code == 200, record.text
        scrub = owner.post("/scrub_phi", json={"text": NOTE, "operator": "reversible"})
        assert scrub.status_code == 200, scrub.text
        yield World(
            url=server.url, tokens=tokens, upload_job=upload.json()["job_id"], document_id=document_id,
            summary_job=summary.json()["job_id"], patient_name=truth.patient_name,
            record_id=record.json()["record_id"], mapping_id=scrub.json()["mapping_id"],
            reversible_text=scrub.json()["text"], settings=settings,
        )
    if cleanup:
        _pg_execute(f"DROP DATABASE IF EXISTS {cleanup} WITH (FORCE)")


# -- reads: the view each caller gets -------------------------------------------------------------
READ_EXPECTED = {
    "owner": IDENTIFIED,
    "clinician_same_tenant": DEIDENTIFIED,
    "reader_same_tenant": DEIDENTIFIED,
    "admin": IDENTIFIED,
    "clinician_other_tenant": 404,
    "reader_other_tenant": 404,
    "admin_other_tenant": 404,
}


def _read(world: World, client: httpx.Client, route: str) -> tuple[int, str]:
    """(status, body text) of one read route."""
    if route == "GET /job/{upload}":
        r = client.get(f"/job/{world.upload_job}")
    elif route == "GET /job/{upload}/events":
        r = client.get(f"/job/{world.upload_job}/events")
    elif route == "GET /job/{summary}":
        r = client.get(f"/job/{world.summary_job}")
    elif route == "GET /job/{summary}/events":
        r = client.get(f"/job/{world.summary_job}/events")
    elif route == "GET /get_updated_medical_data?record_id":
        r = client.get("/get_updated_medical_data", params={"record_id": world.record_id})
    else:  # pragma: no cover
        raise AssertionError(route)
    return r.status_code, r.text


READ_ROUTES = [
    "GET /job/{upload}",
    "GET /job/{upload}/events",
    "GET /job/{summary}",
    "GET /job/{summary}/events",
    "GET /get_updated_medical_data?record_id",
]


@pytest.mark.parametrize("caller", list(CALLERS))
@pytest.mark.parametrize("route", READ_ROUTES)
def test_reads_give_each_caller_its_view_or_404(world: World, route: str, caller: str) -> None:
    expected = READ_EXPECTED[caller]
    with world.client(caller) as client:
        status, body = _read(world, client, route)
    if expected == 404:
        assert status == 404, body
        assert SSN not in body and world.patient_name not in body
        return
    assert status == 200, body
    if route == "GET /job/{upload}":
        assert (SSN in body) is (expected == IDENTIFIED)
    elif route == "GET /job/{summary}":
        assert (world.patient_name in body) is (expected == IDENTIFIED)
        if expected == DEIDENTIFIED:
            assert "IDENTIFIED_DATA_WITHHELD" in body
    elif route == "GET /job/{summary}/events":
        events = parse_sse(body)
        assert events[-1]["event"] == "complete"
        tokens = [e for e in events if e["event"] == "token"]
        if expected == DEIDENTIFIED:
            assert tokens == [] and world.patient_name not in body
    else:
        assert SSN not in body and world.patient_name not in body


def test_a_reader_never_sees_the_extracted_text_but_sees_the_scrubbed_copy(world: World) -> None:
    with world.client("reader_same_tenant") as client:
        doc = client.get(f"/job/{world.upload_job}").json()["result"]["documents"][0]
    assert "text" not in doc
    assert doc["phi"]["text"] and SSN not in doc["phi"]["text"]
    assert doc["medical"]["counts"]["medications"] >= 1  # structured data stays


def test_an_admin_reading_another_keys_job_leaves_a_cross_owner_audit_row(world: World) -> None:
    with world.client("admin") as client:
        assert client.get(f"/job/{world.upload_job}").status_code == 200

    async def rows(session: Any) -> list[AuditLog]:
        found = await session.execute(
            select(AuditLog).where(AuditLog.action == "job.read", AuditLog.user_id.like("key:%:admin"))
        )
        return list(found.scalars())

    audited = asyncio.run(_with_session(world.settings, rows))
    assert audited and audited[-1].request_data["cross_owner"] is True
    assert audited[-1].request_data["owner"].endswith(":owner")


# -- writes and use as a source: only the owner and admins of its tenant ---------------------------
WRITE_EXPECTED = {
    "owner": 200,
    "clinician_same_tenant": 404,
    "reader_same_tenant": 403,
    "admin": 200,
    "clinician_other_tenant": 404,
    "reader_other_tenant": 403,
    "admin_other_tenant": 404,
}
REIDENTIFY_EXPECTED = {caller: 403 for caller in CALLERS} | {"admin": 200, "admin_other_tenant": 404}


def _current_version(world: World) -> int:
    with world.client("owner") as owner:
        return int(owner.get("/get_updated_medical_data", params={"record_id": world.record_id}).json()["version"])


def _write(world: World, client: httpx.Client, route: str) -> httpx.Response:
    if route == "DELETE /job/{id}":
        with world.client("owner") as owner:  # a job of its own for each case
            job_id = owner.post("/upload", files={"files": ("n.txt", NOTE.encode(), "text/plain")},
                                data={"extract": "false", "scrub": "false"}).json()["job_id"]
            _wait(owner, job_id)
        return client.delete(f"/job/{job_id}")
    if route == "POST /extract_medical_data {document_id}":
        return client.post("/extract_medical_data", json={"document_id": world.document_id})
    if route == "POST /generate_patient_summary {job_id}":
        return client.post("/generate_patient_summary", json={"job_id": world.upload_job, "model": "template"})
    if route == "PUT /update_medical_data":
        with world.client("owner") as owner:
            data = owner.get("/get_updated_medical_data", params={"record_id": world.record_id}).json()["data"]
        return client.put("/update_medical_data",
                          json={"record_id": world.record_id, "version": _current_version(world), "data": data})
    if route == "POST /scrub_phi/reidentify":
        return client.post("/scrub_phi/reidentify",
                           json={"mapping_id": world.mapping_id, "text": world.reversible_text})
    raise AssertionError(route)  # pragma: no cover


WRITE_ROUTES = [
    "DELETE /job/{id}",
    "POST /extract_medical_data {document_id}",
    "POST /generate_patient_summary {job_id}",
    "PUT /update_medical_data",
    "POST /scrub_phi/reidentify",
]


@pytest.mark.parametrize("caller", list(CALLERS))
@pytest.mark.parametrize("route", WRITE_ROUTES)
def test_writes_and_sources_need_ownership_or_admin(world: World, route: str, caller: str) -> None:
    expected = (REIDENTIFY_EXPECTED if route == "POST /scrub_phi/reidentify" else WRITE_EXPECTED)[caller]
    with world.client(caller) as client:
        response = _write(world, client, route)
    if expected == 200:
        assert response.status_code in (200, 202), response.text
        if route == "POST /scrub_phi/reidentify":
            assert SSN in response.json()["text"]
        return
    assert response.status_code == expected, response.text
    assert response.json()["error"]["code"] in ("ROLE_REQUIRED", "JOB_NOT_FOUND", "DOCUMENT_NOT_FOUND",
                                                "MEDICAL_RECORD_NOT_FOUND", "PHI_MAPPING_NOT_FOUND")
    assert SSN not in response.text


def test_an_unknown_id_and_someone_elses_id_answer_the_same(world: World) -> None:
    with world.client("clinician_other_tenant") as client:
        theirs = client.get(f"/job/{world.upload_job}")
        unknown = client.get(f"/job/{uuid.uuid4()}")
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.json()["error"]["code"] == unknown.json()["error"]["code"] == "JOB_NOT_FOUND"
