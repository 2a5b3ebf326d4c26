"""Signed checkpoints catch a cut tail; the service role cannot remove the append-only guard."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import func, select, text
from typer.testing import CliRunner

from ai_med_extract.audit.checkpoint import write_checkpoint
from ai_med_extract.audit.trail import verify_chain
from ai_med_extract.cli import app as cli_app
from ai_med_extract.config import Settings
from ai_med_extract.db.roles import grant_service_role
from ai_med_extract.db.tables import AuditLog
from ai_med_extract.security.keyring import Keyring
from tests.conftest import TEST_SECRET
from tests.support import running_app, wait_for_job


async def _some_rows(client: httpx.AsyncClient, uploads: int = 3) -> None:
    for _ in range(uploads):
        r = await client.post("/upload", files={"files": ("n.txt", b"x", "text/plain")},
                              data={"scrub": "false", "extract": "false"})
        await wait_for_job(client, r.json()["job_id"])


async def _delete_as_owner(client: httpx.AsyncClient, database_url: str, where: str) -> None:
    """What only the owner role can do: switch the append-only guard off and delete rows."""
    async with client.app.state.services.engine.begin() as conn:  # type: ignore[attr-defined]
        if database_url.startswith("postgresql"):
            await conn.execute(text("ALTER TABLE audit_logs DISABLE TRIGGER audit_logs_append_only"))
            await conn.execute(text(f"DELETE FROM audit_logs {where}"))
            await conn.execute(text("ALTER TABLE audit_logs ENABLE TRIGGER audit_logs_append_only"))
        else:
            await conn.execute(text("DROP TRIGGER IF EXISTS audit_logs_no_delete"))
            await conn.execute(text(f"DELETE FROM audit_logs {where}"))


async def _verify(client: httpx.AsyncClient) -> Any:
    services = client.app.state.services  # type: ignore[attr-defined]
    checkpoint, problems = services.checkpoints.last()
    assert problems == []
    async with services.sessionmaker() as session:
        return await verify_chain(session, Keyring.from_secret(TEST_SECRET.encode()), checkpoint)


@pytest.mark.parametrize("cut", ["last 3 rows", "every row"])
async def test_cutting_the_tail_after_a_checkpoint_is_detected(
    client: httpx.AsyncClient, database_url: str, cut: str
) -> None:
    await _some_rows(client)
    services = client.app.state.services  # type: ignore[attr-defined]
    async with services.sessionmaker() as session:
        checkpoint = await write_checkpoint(session, services.checkpoints)
        last_ids = [r for r in (await session.execute(
            select(AuditLog.id).order_by(AuditLog.id.desc()).limit(3))).scalars()]
    assert checkpoint.rows >= 6 and (await _verify(client)).ok
    without_checkpoint_ok = None
    if cut == "last 3 rows":
        await _delete_as_owner(client, database_url, f"WHERE id >= {min(last_ids)}")
    else:
        await _delete_as_owner(client, database_url, "")
    async with services.sessionmaker() as session:
        without_checkpoint_ok = (await verify_chain(session, Keyring.from_secret(TEST_SECRET.encode()))).ok
    report = await _verify(client)
    assert without_checkpoint_ok is True  # the chain alone cannot see a cut tail ...
    assert not report.ok  # ... the checkpoint can
    assert report.problems[-1].row_id == checkpoint.last_id and "cut" in report.problems[-1].reason


async def test_a_forged_checkpoint_line_is_reported(client: httpx.AsyncClient) -> None:
    await _some_rows(client, 1)
    services = client.app.state.services  # type: ignore[attr-defined]
    async with services.sessionmaker() as session:
        real = await write_checkpoint(session, services.checkpoints)
    forged = {"rows": 1, "last_id": 1, "head_hash": real.head_hash, "at": real.at, "signature": "0" * 64}
    with services.checkpoints.path.open("a") as handle:
        handle.write(json.dumps(forged) + "\n")
    found, problems = services.checkpoints.last()
    assert found == real and problems == ["checkpoint line 2 has a bad signature"]
    assert oct(services.checkpoints.path.stat().st_mode & 0o777) == "0o600"


async def test_the_service_writes_a_checkpoint_at_shutdown(settings_factory: Callable[..., Settings]) -> None:
    settings = settings_factory()
    async with running_app(settings) as client:
        await _some_rows(client, 1)
        services = client.app.state.services  # type: ignore[attr-defined]
    checkpoint, problems = services.checkpoints.last()
    async with services.sessionmaker() as session:
        rows = (await session.execute(select(func.count()).select_from(AuditLog))).scalar_one()
    assert problems == [] and checkpoint is not None and checkpoint.rows == rows
    await services.engine.dispose()


def test_audit_checkpoint_and_verify_commands(
    settings_factory: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    settings = settings_factory()
    monkeypatch.setenv("AME_ENVIRONMENT", "test")
    monkeypatch.setenv("AME_DATABASE__URL", database_url)
    monkeypatch.setenv("AME_STORAGE__DIRECTORY", str(settings.storage.directory))
    monkeypatch.setenv("AME_STORAGE__ENCRYPTION_KEY", settings.storage.encryption_key.get_secret_value())
    monkeypatch.setenv("AME_SECURITY__SECRET_KEY", TEST_SECRET)
    runner = CliRunner()
    made = runner.invoke(cli_app, ["audit", "checkpoint"])
    assert made.exit_code == 0 and "checkpoint: 0 rows" in made.output
    checked = runner.invoke(cli_app, ["audit", "verify"])
    assert checked.exit_code == 0 and "consistent with the checkpoint" in checked.output


# -- roles ----------------------------------------------------------------------------------------
@pytest.fixture
def service_role(database_url: str, postgres: str) -> Any:
    if not database_url.startswith("postgresql"):
        pytest.skip("database roles are PostgreSQL's")  # SQLite has no roles; the other cases cover it
    role = f"ame_svc_{uuid.uuid4().hex[:8]}"

    async def run(dsn: str, *statements: str) -> None:
        conn = await asyncpg.connect(dsn)
        try:
            for s in statements:
                await conn.execute(s)
        finally:
            await conn.close()

    asyncio.run(run(postgres, f"CREATE ROLE {role} LOGIN"))
    yield role, database_url.replace("postgres@", f"{role}@", 1)
    test_dsn = database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    asyncio.run(run(test_dsn, f"DROP OWNED BY {role}"))
    asyncio.run(run(postgres, f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'",
                    f"DROP ROLE IF EXISTS {role}"))


async def test_the_service_role_works_but_cannot_remove_or_change_audit_rows(
    service_role: tuple[str, str], database_url: str, settings_factory: Callable[..., Settings]
) -> None:
    role, service_url = service_role
    statements = await grant_service_role(database_url, role)
    assert "GRANT SELECT, INSERT ON audit_logs TO " + role in statements
    async with running_app(settings_factory(database={"url": service_url})) as client:
        await _some_rows(client, 1)  # uploads, jobs, events and audit rows all written as the service role
        async with client.app.state.services.engine.connect() as conn:  # type: ignore[attr-defined]
            assert (await conn.execute(text("SELECT count(*) FROM audit_logs"))).scalar_one() >= 2
            assert (await conn.execute(text("SELECT current_user"))).scalar_one() == role
        for statement in (
            "DROP TRIGGER audit_logs_append_only ON audit_logs",
            "ALTER TABLE audit_logs DISABLE TRIGGER audit_logs_append_only",
            "DELETE FROM audit_logs",
            "UPDATE audit_logs SET action = 'x'",
            "TRUNCATE audit_logs",
            "DROP TABLE audit_logs",
        ):
            async with client.app.state.services.engine.connect() as conn:  # type: ignore[attr-defined]
                with pytest.raises(Exception) as caught:
                    await conn.execute(text(statement))
                assert "permission denied" in str(caught.value) or "must be owner" in str(caught.value)
