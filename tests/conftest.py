"""Shared fixtures: real databases (SQLite and PostgreSQL), settings, a running app and its client.

PostgreSQL is expected at ``AME_TEST_PG`` (default: postgres@127.0.0.1:5432, trust auth); if it does
not answer, the fixture tries to start the local cluster. Each test gets a fresh database cloned
from a template that the migrations built once per session.
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from ai_med_extract.commands.service import upgrade_database
from ai_med_extract.config import Settings
from tests.support import LiveServer, running_app

PG_DSN = os.environ.get("AME_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
TEST_ENCRYPTION_KEY = "dGVzdC1rZXktdGVzdC1rZXktdGVzdC1rZXktdGVzdC0="  # fixed Fernet key for tests
TEST_SECRET = "test-secret-" + "x" * 40


# -- PostgreSQL ----------------------------------------------------------------------------------
def _pg_execute(*statements: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(PG_DSN, timeout=10)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


def _pg_answers() -> bool:
    try:
        _pg_execute("SELECT 1")
        return True
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False


def _start_local_postgres() -> None:
    versions = sorted(os.path.basename(p) for p in glob.glob("/etc/postgresql/*"))
    if not versions or shutil.which("pg_ctlcluster") is None:
        return
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"],
        check=False,
        capture_output=True,
        timeout=60,
    )


@pytest.fixture(scope="session")
def postgres() -> str:
    if not _pg_answers():
        _start_local_postgres()
        deadline = time.monotonic() + 30
        while not _pg_answers():
            if time.monotonic() > deadline:
                pytest.fail(f"PostgreSQL is not reachable at {PG_DSN} and could not be started")
            time.sleep(0.5)
    return PG_DSN


def _pg_url(dsn: str, database: str) -> str:
    base = dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base}/{database}"


@pytest.fixture(scope="session")
def pg_template(postgres: str) -> Iterator[str]:
    name = f"ame_tmpl_{os.getpid()}"
    _pg_execute(f"DROP DATABASE IF EXISTS {name}", f"CREATE DATABASE {name}")
    upgrade_database(_pg_url(postgres, name))
    yield name
    _pg_execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    upgrade_database(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database of each kind."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "db.sqlite"
        shutil.copy(template, target)
        yield f"sqlite+aiosqlite:///{target}"
        return
    template_name: str = request.getfixturevalue("pg_template")
    postgres_dsn: str = request.getfixturevalue("postgres")
    name = f"ame_t_{uuid.uuid4().hex[:12]}"
    _pg_execute(f"CREATE DATABASE {name} TEMPLATE {template_name}")
    yield _pg_url(postgres_dsn, name)
    _pg_execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# -- settings and app ------------------------------------------------------------------------------
@pytest.fixture
def settings_factory(tmp_path: Path, database_url: str) -> Callable[..., Settings]:
    """Settings for a test: its own database and storage, auth and rate limits off unless asked."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "environment": "test",
            "database": {"url": database_url},
            "storage": {"directory": str(tmp_path / "storage"), "encryption_key": TEST_ENCRYPTION_KEY},
            "security": {
                "auth_enabled": False,
                "secret_key": TEST_SECRET,
                "rate_limit": {"enabled": False},
            },
            "logging": {"level": "INFO", "json_format": True},
        }
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(values.get(key), dict):
                merged = dict(values[key])
                for k, v in value.items():
                    if isinstance(v, dict) and isinstance(merged.get(k), dict):
                        merged[k] = {**merged[k], **v}
                    else:
                        merged[k] = v
                values[key] = merged
            else:
                values[key] = value
        return Settings(_env_file=None, **values)

    return make


@pytest.fixture
async def client(settings_factory: Callable[..., Settings]) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(settings_factory()) as c:
        yield c


@pytest.fixture
def live_server(settings_factory: Callable[..., Settings]) -> Callable[..., LiveServer]:
    """``with live_server(**settings_overrides) as server: server.url``"""

    def make(**overrides: Any) -> LiveServer:
        return LiveServer(settings_factory(**overrides))

    return make
