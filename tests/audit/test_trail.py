"""The audit trail: one row per patient-data request, chained hashes, append-only in the database."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from ai_med_extract.audit.trail import verify_chain
from ai_med_extract.cli import app as cli_app
from ai_med_extract.db.tables import AuditLog
from ai_med_extract.security.keyring import Keyring
from tests.conftest import TEST_SECRET
from tests.support import wait_for_job


async def _rows(client: httpx.AsyncClient) -> list[AuditLog]:
    async with client.app.state.services.sessionmaker() as session:
        return list((await session.execute(select(AuditLog).order_by(AuditLog.id))).scalars())


async def test_each_patient_data_request_writes_one_audit_row(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/upload", files={"files": ("n.txt", b"note text", "text/plain")}, headers={"User-Agent": "audit-test"}
    )
    job_id = response.json()["job_id"]
    await wait_for_job(client, job_id)  # polls GET /job: each poll is a read of the job
    rows = await _rows(client)
    upload = [r for r in rows if r.action == "document.upload"]
    assert len(upload) == 1
    row = upload[0]
    assert row.resource_type == "job" and row.resource_id == job_id
    assert row.phi_accessed is True
    assert row.response_status == 202
    assert row.user_agent == "audit-test"
    assert str(row.ip_address) == "127.0.0.1"
    assert row.request_data == {"files": 1, "bytes": [9], "media_types": ["text/plain"]}
    reads = [r for r in rows if r.action == "job.read"]
    assert reads and reads[-1].phi_accessed is True  # the completed read returned the result


async def test_audit_rows_hold_metadata_never_document_content(client: httpx.AsyncClient) -> None:
    marker = "Zebulon Quartermaine 123-45-6789"
    response = await client.post("/upload", files={"files": ("Quartermaine.txt", marker.encode(), "text/plain")})
    await wait_for_job(client, response.json()["job_id"])
    for row in await _rows(client):
        flat = " ".join(str(getattr(row, c.name)) for c in AuditLog.__table__.columns)
        assert "Zebulon" not in flat and "Quartermaine" not in flat and "123-45-6789" not in flat


async def test_failed_access_to_a_job_is_audited_too(client: httpx.AsyncClient) -> None:
    response = await client.get("/job/00000000-0000-0000-0000-000000000000")
    assert response.status_code == 404
    rows = await _rows(client)
    assert rows[-1].response_status == 404
    assert rows[-1].error_message == "JOB_NOT_FOUND"


async def test_the_chain_verifies_and_names_an_edited_row(client: httpx.AsyncClient, database_url: str) -> None:
    for _ in range(3):
        r = await client.post("/upload", files={"files": ("n.txt", b"x", "text/plain")})
        await wait_for_job(client, r.json()["job_id"])
    services = client.app.state.services
    async with services.sessionmaker() as session:
        report = await verify_chain(session, Keyring.from_secret(TEST_SECRET.encode()))
    assert report.ok and report.rows_checked >= 6
    target = (await _rows(client))[2].id
    async with services.engine.begin() as conn:
        if database_url.startswith("postgresql"):
            await conn.execute(text("ALTER TABLE audit_logs DISABLE TRIGGER audit_logs_append_only"))
            await conn.execute(text("UPDATE audit_logs SET user_id = 'someone-else' WHERE id = :i"), {"i": target})
            await conn.execute(text("ALTER TABLE audit_logs ENABLE TRIGGER audit_logs_append_only"))
        else:
            await conn.execute(text("DROP TRIGGER audit_logs_no_update"))
            await conn.execute(text("UPDATE audit_logs SET user_id = 'someone-else' WHERE id = :i"), {"i": target})
    async with services.sessionmaker() as session:
        report = await verify_chain(session, Keyring.from_secret(TEST_SECRET.encode()))
    assert [p.row_id for p in report.problems] == [target]
    assert "edited" in report.problems[0].reason


async def test_the_chain_names_the_row_after_a_deleted_one(client: httpx.AsyncClient, database_url: str) -> None:
    for _ in range(2):
        r = await client.post("/upload", files={"files": ("n.txt", b"x", "text/plain")})
        await wait_for_job(client, r.json()["job_id"])
    rows = await _rows(client)
    victim, follower = rows[1].id, rows[2].id
    services = client.app.state.services
    async with services.engine.begin() as conn:
        if database_url.startswith("postgresql"):
            await conn.execute(text("ALTER TABLE audit_logs DISABLE TRIGGER audit_logs_append_only"))
            await conn.execute(text("DELETE FROM audit_logs WHERE id = :i"), {"i": victim})
            await conn.execute(text("ALTER TABLE audit_logs ENABLE TRIGGER audit_logs_append_only"))
        else:
            await conn.execute(text("DROP TRIGGER audit_logs_no_delete"))
            await conn.execute(text("DELETE FROM audit_logs WHERE id = :i"), {"i": victim})
    async with services.sessionmaker() as session:
        report = await verify_chain(session, Keyring.from_secret(TEST_SECRET.encode()))
    assert [p.row_id for p in report.problems] == [follower]
    assert "deleted" in report.problems[0].reason


@pytest.mark.parametrize("statement", ["UPDATE audit_logs SET action = 'x'", "DELETE FROM audit_logs"])
async def test_the_database_refuses_to_change_audit_rows(client: httpx.AsyncClient, statement: str) -> None:
    await client.post("/upload", files={"files": ("n.txt", b"x", "text/plain")})
    async with client.app.state.services.engine.connect() as conn:
        with pytest.raises(DBAPIError) as caught:
            await conn.execute(text(statement))
        assert "append-only" in str(caught.value)


async def test_emptying_the_table_is_refused(client: httpx.AsyncClient, database_url: str) -> None:
    # PostgreSQL's TRUNCATE bypasses row triggers, so a statement trigger refuses it; SQLite's
    # equivalent is an unqualified DELETE, which the row trigger refuses.
    statement = "TRUNCATE audit_logs" if database_url.startswith("postgresql") else "DELETE FROM audit_logs"
    await client.post("/upload", files={"files": ("n.txt", b"x", "text/plain")})
    async with client.app.state.services.engine.connect() as conn:
        with pytest.raises(DBAPIError):
            await conn.execute(text(statement))


async def test_concurrent_writers_keep_one_unbroken_chain(client: httpx.AsyncClient) -> None:
    responses = await asyncio.gather(
        *[client.post("/upload", files={"files": (f"{i}.txt", b"x", "text/plain")}) for i in range(12)]
    )
    assert all(r.status_code == 202 for r in responses)
    async with client.app.state.services.sessionmaker() as session:
        report = await verify_chain(session, Keyring.from_secret(TEST_SECRET.encode()))
    assert report.ok and report.rows_checked >= 12


def test_audit_verify_command_reports_tampering(settings_factory, monkeypatch: pytest.MonkeyPatch, database_url: str) -> None:
    settings = settings_factory()
    monkeypatch.setenv("AME_DATABASE__URL", database_url)
    monkeypatch.setenv("AME_SECURITY__SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("AME_STORAGE__DIRECTORY", str(settings.storage.directory))

    async def write_rows() -> None:
        from tests.support import running_app

        async with running_app(settings) as client:
            for _ in range(2):
                r = await client.post("/upload", files={"files": ("n.txt", b"x", "text/plain")})
                await wait_for_job(client, r.json()["job_id"])
            async with client.app.state.services.engine.begin() as conn:
                if database_url.startswith("postgresql"):
                    await conn.execute(text("ALTER TABLE audit_logs DISABLE TRIGGER audit_logs_append_only"))
                    await conn.execute(text("UPDATE audit_logs SET resource_id = 'forged' WHERE id = 1"))
                    await conn.execute(text("ALTER TABLE audit_logs ENABLE TRIGGER audit_logs_append_only"))
                else:
                    await conn.execute(text("DROP TRIGGER audit_logs_no_update"))
                    await conn.execute(text("UPDATE audit_logs SET resource_id = 'forged' WHERE id = 1"))

    runner = CliRunner()
    clean = runner.invoke(cli_app, ["audit", "verify"])
    assert clean.exit_code == 0 and "intact: 0 rows" in clean.output
    asyncio.run(write_rows())
    result = runner.invoke(cli_app, ["audit", "verify"])
    assert result.exit_code == 1  # the trail failed the check; 2 is for usage errors
    assert "row 1: content does not match its hash" in result.output
    assert "TAMPERED" in result.output
