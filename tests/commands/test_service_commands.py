"""`db upgrade` from an empty database and `keys create` through the real CLI."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import inspect
from typer.testing import CliRunner

from ai_med_extract.cli import app
from ai_med_extract.config import DatabaseSettings, Settings
from ai_med_extract.db.engine import create_engine, create_sessionmaker
from ai_med_extract.security.keyring import Keyring
from ai_med_extract.security.keys import KeyService
from tests.conftest import TEST_SECRET, _pg_execute, _pg_url


def _tables(url: str) -> set[str]:
    async def run() -> set[str]:
        engine = create_engine(DatabaseSettings(url=url))
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        await engine.dispose()
        return names

    return asyncio.run(run())


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_db_upgrade_builds_the_schema_from_an_empty_database(kind: str, tmp_path, monkeypatch, request) -> None:
    if kind == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/empty.db"
    else:
        dsn = request.getfixturevalue("postgres")
        _pg_execute("DROP DATABASE IF EXISTS ame_cli_empty", "CREATE DATABASE ame_cli_empty")
        url = _pg_url(dsn, "ame_cli_empty")
    monkeypatch.setenv("AME_DATABASE__URL", url)
    result = CliRunner().invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert {"audit_logs", "jobs", "job_events", "documents", "api_keys", "alembic_version"} <= _tables(url)
    again = CliRunner().invoke(app, ["db", "upgrade"])
    assert again.exit_code == 0
    if kind == "postgresql":
        _pg_execute("DROP DATABASE IF EXISTS ame_cli_empty WITH (FORCE)")


def test_keys_create_prints_a_key_that_authenticates_with_its_role(database_url: str, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("AME_DATABASE__URL", database_url)
    monkeypatch.setenv("AME_SECURITY__SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("AME_STORAGE__DIRECTORY", str(tmp_path))
    result = CliRunner().invoke(app, ["keys", "create", "--role", "reader", "--name", "ward-7"])
    assert result.exit_code == 0, result.output
    token = result.stdout.strip().splitlines()[0].rsplit(" ", 1)[-1]
    assert token.startswith("ame_")

    async def check():
        engine = create_engine(Settings(_env_file=None).database)
        async with create_sessionmaker(engine)() as session:
            principal = await KeyService(Keyring.from_secret(TEST_SECRET.encode())).authenticate(session, token)
        await engine.dispose()
        return principal

    principal = asyncio.run(check())
    assert principal is not None and principal.role == "reader"
    bad = CliRunner().invoke(app, ["keys", "create", "--role", "superuser"])
    assert bad.exit_code != 0
