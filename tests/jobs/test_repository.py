"""The job repository's state machine on real databases: leases, recovery, idempotent writes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from ai_med_extract.db.base import utcnow
from ai_med_extract.db.engine import create_engine, create_sessionmaker
from ai_med_extract.db.tables import Job, JobEvent
from ai_med_extract.jobs.repository import IncomingFile, JobRepository
from ai_med_extract.jobs.status import JobStatus
from ai_med_extract.storage.cipher import Cipher
from ai_med_extract.storage.files import FileStore
from tests.conftest import TEST_ENCRYPTION_KEY


@pytest.fixture
async def repository(settings_factory) -> AsyncIterator[JobRepository]:
    settings = settings_factory()
    engine = create_engine(settings.database)
    cipher = Cipher.from_secret(TEST_ENCRYPTION_KEY)
    yield JobRepository(create_sessionmaker(engine), cipher, FileStore(settings.storage.directory, cipher))
    await engine.dispose()


async def _job(repository: JobRepository, secrets: dict[str, str] | None = None) -> str:
    async with repository._sessionmaker() as session, session.begin():
        job = await repository.create(
            session,
            kind="upload",
            created_by="tester",
            files=[IncomingFile(data=b"note", media_type="text/plain", filename="n.txt")],
            secrets=secrets,
        )
        return job.id


async def _row(repository: JobRepository, job_id: str) -> Job:
    async with repository._sessionmaker() as session:
        return (await session.execute(select(Job).where(Job.id == job_id))).scalar_one()


async def _expire(repository: JobRepository, job_id: str) -> None:
    async with repository._sessionmaker() as session, session.begin():
        await session.execute(
            update(Job).where(Job.id == job_id).values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )


async def test_of_two_workers_claiming_one_job_at_once_exactly_one_gets_it(repository: JobRepository) -> None:
    job_id = await _job(repository)
    claims = await asyncio.gather(
        *[repository.claim(job_id, f"worker-{i}", lease_s=30, max_attempts=3) for i in range(4)]
    )
    assert sum(claim is not None for claim in claims) == 1
    assert (await _row(repository, job_id)).attempts == 1


async def test_a_live_lease_is_never_taken_over_or_recovered(repository: JobRepository) -> None:
    job_id = await _job(repository)
    assert await repository.claim(job_id, "a", lease_s=30, max_attempts=3) is not None
    assert await repository.claim(job_id, "b", lease_s=30, max_attempts=3) is None
    recovery = await repository.recover_expired(max_attempts=3)
    assert job_id not in recovery.requeued + recovery.ended
    row = await _row(repository, job_id)
    assert (row.status, row.lease_owner) == (JobStatus.running, "a")


async def test_an_expired_lease_goes_back_to_the_queue_and_the_old_owner_can_no_longer_write(
    repository: JobRepository,
) -> None:
    job_id = await _job(repository)
    assert await repository.claim(job_id, "a", lease_s=30, max_attempts=3) is not None
    await _expire(repository, job_id)
    assert (await repository.recover_expired(max_attempts=3)).requeued == [job_id]
    assert not (await repository.heartbeat(job_id, "a", lease_s=30)).owned
    assert await repository.claim(job_id, "b", lease_s=30, max_attempts=3) is not None
    assert await repository.finish(job_id, JobStatus.completed, owner="a", result={}) is None
    assert await repository.finish(job_id, JobStatus.completed, owner="b", result={"documents": []}) == "upload"
    row = await _row(repository, job_id)
    assert (row.status, row.attempts, row.lease_owner) == (JobStatus.completed, 2, "b")


async def test_a_job_that_loses_its_worker_every_attempt_fails_with_a_reason(repository: JobRepository) -> None:
    job_id = await _job(repository)
    for attempt in range(2):
        assert await repository.claim(job_id, f"w{attempt}", lease_s=30, max_attempts=2) is not None
        await _expire(repository, job_id)
        await repository.recover_expired(max_attempts=2)
    row = await _row(repository, job_id)
    assert row.status == JobStatus.failed
    assert row.error_code == "JOB_ATTEMPTS_EXHAUSTED" and row.error_message


async def test_an_event_written_again_under_its_key_is_not_duplicated(repository: JobRepository) -> None:
    job_id = await _job(repository)
    first = await repository.publish(job_id, "progress", {"stage": "x"}, key="progress:1")
    again = await repository.publish(job_id, "progress", {"stage": "x"}, key="progress:1")
    assert (first, again) == (1, None)
    async with repository._sessionmaker() as session:
        keys = (await session.execute(select(JobEvent.key).where(JobEvent.job_id == job_id))).scalars().all()
    assert keys == ["progress:1"]


async def test_a_pdf_password_is_stored_encrypted_reaches_the_worker_and_is_gone_when_the_job_ends(
    repository: JobRepository,
) -> None:
    job_id = await _job(repository, secrets={"password": "s3cret-pw"})
    row = await _row(repository, job_id)
    assert row.secrets_enc is not None and b"s3cret-pw" not in row.secrets_enc
    claimed = await repository.claim(job_id, "a", lease_s=30, max_attempts=3)
    assert claimed is not None and claimed.secrets == {"password": "s3cret-pw"}
    await repository.finish(job_id, JobStatus.failed, "X", "failed", owner="a")
    assert (await _row(repository, job_id)).secrets_enc is None


async def test_cancelling_a_running_job_flags_it_for_its_worker(repository: JobRepository) -> None:
    job_id = await _job(repository)
    assert await repository.claim(job_id, "a", lease_s=30, max_attempts=3) is not None
    async with repository._sessionmaker() as session, session.begin():
        job = await repository.get(session, job_id)
        assert await repository.request_cancel(session, job) is False
    assert (await repository.heartbeat(job_id, "a", lease_s=30)).cancel_requested
