"""The LISTEN/NOTIFY listener on real PostgreSQL: it survives its connection being dropped.

Each process (API replica or worker) hears other processes' writes, cancels and key revocations
through one listening connection. The tests terminate that connection's backend the way a database
restart, a failover or an idle-connection reaper does, and show that notifications still arrive.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from ai_med_extract.config import DatabaseSettings
from ai_med_extract.db.engine import create_engine, create_sessionmaker
from ai_med_extract.jobs.events import JobEvents
from ai_med_extract.jobs.repository import CANCEL_CHANNEL, EVENTS_CHANNEL
from ai_med_extract.security.keys import KEYS_CHANNEL
from ai_med_extract.storage.cipher import Cipher
from tests.conftest import TEST_ENCRYPTION_KEY, _pg_execute, _pg_url


@pytest.fixture
def pg_database(postgres: str, pg_template: str) -> Iterator[tuple[str, str]]:
    """A fresh migrated PostgreSQL database: (SQLAlchemy URL, asyncpg DSN)."""
    name = f"ame_l_{uuid.uuid4().hex[:12]}"
    _pg_execute(f"CREATE DATABASE {name} TEMPLATE {pg_template}")
    try:
        yield _pg_url(postgres, name), postgres.rsplit("/", 1)[0] + f"/{name}"
    finally:
        _pg_execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
async def events(pg_database: tuple[str, str]) -> AsyncIterator[JobEvents]:
    url, _ = pg_database
    engine = create_engine(DatabaseSettings(url=url))
    listener = JobEvents(create_sessionmaker(engine), Cipher.from_secret(TEST_ENCRYPTION_KEY), watchdog_s=1.0)
    await listener.listen(url)
    try:
        yield listener
    finally:
        await listener.close()
        await engine.dispose()


async def _terminate_listener(dsn: str, events: JobEvents, conn: asyncpg.Connection | None = None) -> None:
    """Kill the listening connection's backend from outside."""
    pid = events._connection.get_server_pid()
    own = conn is None
    conn = conn or await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid) is True
    finally:
        if own:
            await conn.close()


async def _wait_reconnected(events: JobEvents, reconnects: int, timeout: float = 60) -> None:
    """Wait until the listener has replaced its connection (``reconnects`` is the count before)."""
    deadline = time.monotonic() + timeout
    while not (events.reconnects > reconnects and events.listening):
        assert time.monotonic() < deadline, "the listener never reconnected"
        await asyncio.sleep(0.05)


async def _notify(dsn: str, channel: str, payload: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_notify($1, $2)", channel, payload)
    finally:
        await conn.close()


@pytest.mark.timeout(180)
async def test_events_still_arrive_after_the_listeners_backend_is_terminated(
    events: JobEvents, pg_database: tuple[str, str]
) -> None:
    _, dsn = pg_database
    job_id = str(uuid.uuid4())
    version = events.version(job_id)

    await _notify(dsn, EVENTS_CHANNEL, job_id)  # before: heard
    version = await events.wait(job_id, version, timeout=60)
    assert version == 1

    await _terminate_listener(dsn, events)
    await _wait_reconnected(events, 0)
    assert events.reconnects == 1
    version = events.version(job_id)  # the reconnect itself woke every stream once

    for expected in (1, 2):  # after: heard again, each notification once
        await _notify(dsn, EVENTS_CHANNEL, job_id)
        after = await events.wait(job_id, version, timeout=60)
        assert after == version + 1, f"notification {expected} after the reconnect was not heard"
        version = after


@pytest.mark.timeout(180)
async def test_a_reconnect_wakes_waiting_streams_and_keeps_cancels_and_revocations_flowing(
    events: JobEvents, pg_database: tuple[str, str]
) -> None:
    _, dsn = pg_database
    job_id = str(uuid.uuid4())
    cancelled: list[str] = []
    revoked: list[int | None] = []
    events.on_cancel(cancelled.append)
    events.on_key_revoked(revoked.append)
    version = events.version(job_id)

    # A stream waiting while the connection drops is woken by the reconnect (what was sent in
    # between is lost, so it must read the database again) and not only by its timeout.
    waiting = asyncio.create_task(events.wait(job_id, version, timeout=120))
    await asyncio.sleep(0)
    await _terminate_listener(dsn, events)
    await _wait_reconnected(events, 0)
    assert await asyncio.wait_for(waiting, timeout=60) == version + 1
    assert revoked == [None]  # cached keys forgotten: a revocation may have been missed

    await _notify(dsn, CANCEL_CHANNEL, job_id)
    await _notify(dsn, KEYS_CHANNEL, "7")
    deadline = time.monotonic() + 60
    while not (cancelled and len(revoked) == 2):
        assert time.monotonic() < deadline, (cancelled, revoked)
        await asyncio.sleep(0.05)
    assert cancelled == [job_id] and revoked == [None, 7]


@pytest.mark.timeout(180)
async def test_the_listener_keeps_trying_while_the_database_refuses_it(
    events: JobEvents, pg_database: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, dsn = pg_database
    real_connect = asyncpg.connect
    refusals = 0

    async def refusing(*args: object, **kwargs: object) -> asyncpg.Connection:
        nonlocal refusals
        if refusals < 3:
            refusals += 1
            raise ConnectionRefusedError("database restarting")
        return await real_connect(*args, **kwargs)

    admin = await real_connect(dsn)
    try:
        monkeypatch.setattr(asyncpg, "connect", refusing)
        await _terminate_listener(dsn, events, admin)
        await _wait_reconnected(events, 0)
    finally:
        await admin.close()
    assert refusals == 3 and events.reconnects == 1
    monkeypatch.setattr(asyncpg, "connect", real_connect)

    job_id = str(uuid.uuid4())
    version = events.version(job_id)
    await _notify(dsn, EVENTS_CHANNEL, job_id)
    assert await events.wait(job_id, version, timeout=60) == version + 1
