"""Verified API keys are remembered briefly, and a revocation is honoured at once, in any process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ai_med_extract.config import DatabaseSettings
from ai_med_extract.db.engine import create_engine, create_sessionmaker
from ai_med_extract.jobs.events import JobEvents
from ai_med_extract.security.keyring import Keyring
from ai_med_extract.security.keys import KeyService
from ai_med_extract.security.role import Role
from ai_med_extract.storage.cipher import Cipher
from tests.conftest import TEST_ENCRYPTION_KEY, TEST_SECRET
from tests.jobs.test_listener import pg_database  # noqa: F401 - a fixture

SECRET = TEST_SECRET.encode()


@pytest.fixture
async def sessions(pg_database: tuple[str, str]) -> AsyncIterator[async_sessionmaker[AsyncSession]]:  # noqa: F811
    engine = create_engine(DatabaseSettings(url=pg_database[0]))
    yield create_sessionmaker(engine)
    await engine.dispose()


async def _create(keys: KeyService, sessions: async_sessionmaker[AsyncSession]) -> tuple[int, str]:
    async with sessions() as session, session.begin():
        row, token = await keys.create(session, name="cache-test", role=Role.clinician)
        return row.id, token


async def test_a_verified_key_is_remembered_and_a_refused_one_is_not(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    keys = KeyService(Keyring.from_secret(SECRET), cache_s=60)
    key_id, token = await _create(keys, sessions)
    assert keys.cached(token) is None
    async with sessions() as session:
        principal = await keys.authenticate(session, token)
    assert principal is not None and keys.cached(token) == principal
    async with sessions() as session:
        assert await keys.authenticate(session, token[:-2] + "xx") is None
    assert keys.cached(token[:-2] + "xx") is None
    assert KeyService(Keyring.from_secret(SECRET), cache_s=0).cached(token) is None  # caching can be switched off


async def test_a_remembered_key_expires(sessions: async_sessionmaker[AsyncSession]) -> None:
    keys = KeyService(Keyring.from_secret(SECRET), cache_s=0.2)
    _, token = await _create(keys, sessions)
    async with sessions() as session:
        assert await keys.authenticate(session, token) is not None
    deadline = time.monotonic() + 60
    while keys.cached(token) is not None:  # expiry is the bound for revocations that were missed
        assert time.monotonic() < deadline, "the remembered key never expired"
        await asyncio.sleep(0.05)


async def test_revoking_in_this_process_forgets_the_key_at_once(sessions: async_sessionmaker[AsyncSession]) -> None:
    keys = KeyService(Keyring.from_secret(SECRET), cache_s=60)
    key_id, token = await _create(keys, sessions)
    async with sessions() as session:
        assert await keys.authenticate(session, token) is not None
    async with sessions() as session, session.begin():
        assert await keys.revoke(session, key_id)
        assert keys.cached(token) is None
    async with sessions() as session:
        assert await keys.authenticate(session, token) is None
    assert keys.cached(token) is None


@pytest.mark.timeout(120)
async def test_revoking_in_another_process_forgets_the_key_here(
    sessions: async_sessionmaker[AsyncSession], pg_database: tuple[str, str]  # noqa: F811
) -> None:
    here = KeyService(Keyring.from_secret(SECRET), cache_s=600)  # expiry alone would keep it for ten minutes
    there = KeyService(Keyring.from_secret(SECRET), cache_s=600)
    events = JobEvents(sessions, Cipher.from_secret(TEST_ENCRYPTION_KEY))
    events.on_key_revoked(here.forget)
    await events.listen(pg_database[0])
    try:
        key_id, token = await _create(there, sessions)
        other_id, other = await _create(there, sessions)
        async with sessions() as session:
            assert await here.authenticate(session, token) is not None
            assert await here.authenticate(session, other) is not None
        async with sessions() as session, session.begin():
            assert await there.revoke(session, key_id)
        deadline = time.monotonic() + 60
        while here.cached(token) is not None:
            assert time.monotonic() < deadline, "the revocation never reached the other process"
            await asyncio.sleep(0.05)
        assert here.cached(other) is not None  # other keys stay remembered
    finally:
        await events.close()
