"""Engine and session factory. Built once by the app lifespan (or a CLI command), never at import."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from ai_med_extract.config import DatabaseSettings


def _sqlite_path(url: str) -> Path | None:
    prefix = "sqlite+aiosqlite:///"
    if not url.startswith(prefix) or ":memory:" in url:
        return None
    return Path(url[len(prefix) :].split("?", 1)[0])


def private_sqlite_file(path: Path) -> None:
    """Create the SQLite file readable by its owner only (0600); SQLite gives its -wal and -shm files
    the database file's mode. An existing file is narrowed to 0600 too."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    os.chmod(path, 0o600)


def sqlite_path(url: str) -> Path | None:
    return _sqlite_path(url)


async def check_database(sessionmaker: async_sessionmaker[AsyncSession], *, timeout_s: float = 5) -> None:
    """Raise unless the database answers a trivial query within ``timeout_s`` (readiness)."""
    async with sessionmaker() as session:
        await asyncio.wait_for(session.execute(text("SELECT 1")), timeout=timeout_s)


def create_engine(settings: DatabaseSettings) -> AsyncEngine:
    kwargs: dict[str, Any] = {"echo": settings.echo}
    if settings.is_sqlite:
        path = _sqlite_path(settings.url)
        if path is not None:
            private_sqlite_file(path)
        kwargs["connect_args"] = {"timeout": 30}
    else:
        kwargs.update(pool_size=settings.pool_size, pool_pre_ping=True)
    engine = create_async_engine(settings.url, **kwargs)
    if settings.is_sqlite:
        _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: AsyncEngine) -> None:
    """Foreign keys on, WAL, and write transactions that take the lock up front.

    ``BEGIN IMMEDIATE`` serialises writers at the start of a transaction, so the audit hash chain
    (read the last hash, insert the next row) cannot fork between two concurrent requests.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
