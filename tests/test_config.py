"""DATABASE_URL is honoured as the usual alias of AME_DATABASE__URL, which wins when both are set."""

from __future__ import annotations

import pytest

from ai_med_extract.config import Settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "AME_DATABASE__URL", "AME_DATABASE__POOL_SIZE"):
        monkeypatch.delenv(name, raising=False)


def test_database_url_is_used_when_the_prefixed_setting_is_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://ame@db.internal/ame")

    assert Settings(_env_file=None).database.url == "postgresql+asyncpg://ame@db.internal/ame"


def test_prefixed_setting_wins_over_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://ame@db.internal/other")
    monkeypatch.setenv("AME_DATABASE__URL", "sqlite+aiosqlite:///./data/x.db")

    assert Settings(_env_file=None).database.url == "sqlite+aiosqlite:///./data/x.db"


def test_database_url_merges_with_other_database_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://ame@db.internal/ame")
    monkeypatch.setenv("AME_DATABASE__POOL_SIZE", "9")

    database = Settings(_env_file=None).database

    assert (database.url, database.pool_size) == ("postgresql+asyncpg://ame@db.internal/ame", 9)


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("postgres://ame:pw@db/ame", "postgresql+asyncpg://ame:pw@db/ame"),
        ("postgresql://ame@db:5433/ame?sslmode=require", "postgresql+asyncpg://ame@db:5433/ame?sslmode=require"),
        ("sqlite:////var/lib/ame/ame.db", "sqlite+aiosqlite:////var/lib/ame/ame.db"),
    ],
)
def test_database_url_without_an_async_driver_gets_ours(monkeypatch: pytest.MonkeyPatch, given: str, used: str) -> None:
    monkeypatch.setenv("DATABASE_URL", given)

    assert Settings(_env_file=None).database.url == used


def test_without_either_the_default_sqlite_file_is_used() -> None:
    assert Settings(_env_file=None).database.url.startswith("sqlite+aiosqlite:///")
