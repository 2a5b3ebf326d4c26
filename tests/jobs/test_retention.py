"""Retention: finished jobs older than the retention period disappear with their files."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from ai_med_extract.db.base import utcnow
from ai_med_extract.db.tables import Job
from tests.support import running_app, wait_for_job


async def test_expired_jobs_are_swept_with_their_files_and_fresh_ones_stay(settings_factory) -> None:
    settings = settings_factory(storage={"retention_hours": 1, "sweep_interval_s": 0.2})
    async with running_app(settings) as client:
        old = (await client.post("/upload", files={"files": ("a.txt", b"old", "text/plain")})).json()["job_id"]
        new = (await client.post("/upload", files={"files": ("b.txt", b"new", "text/plain")})).json()["job_id"]
        await wait_for_job(client, old)
        await wait_for_job(client, new)
        services = client.app.state.services
        async with services.sessionmaker() as session, session.begin():
            await session.execute(update(Job).where(Job.id == old).values(created_at=utcnow() - timedelta(hours=2)))
        import asyncio

        for _ in range(100):
            if (await client.get(f"/job/{old}")).status_code == 404:
                break
            await asyncio.sleep(0.1)
        assert (await client.get(f"/job/{old}")).status_code == 404
        assert not (services.store.root / "objects" / "jobs" / old).exists()
        assert (await client.get(f"/job/{new}")).status_code == 200
