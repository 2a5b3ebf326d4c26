"""A job is never lost: kill the service mid-job, start it again, find the job finished or failed
with a reason."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from ai_med_extract.db.engine import create_engine, create_sessionmaker
from ai_med_extract.db.tables import Job
from tests.conftest import TEST_ENCRYPTION_KEY, TEST_SECRET
from tests.support import free_port, running_app, wait_for_job


def _serve(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "ai_med_extract", "serve", "--port", str(port), "--no-bootstrap-key"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError("service exited during start-up")
        try:
            if httpx.get(f"{url}/health/live", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError("service did not start")


@pytest.mark.timeout(900)
def test_killing_the_service_mid_job_leaves_the_job_finished_or_failed_with_a_reason(
    database_url: str, tmp_path
) -> None:
    env = {
        **os.environ,
        "AME_ENVIRONMENT": "test",
        "AME_DATABASE__URL": database_url,
        "AME_STORAGE__DIRECTORY": str(tmp_path / "storage"),
        "AME_STORAGE__ENCRYPTION_KEY": TEST_ENCRYPTION_KEY,
        "AME_SECURITY__SECRET_KEY": TEST_SECRET,
        "AME_SECURITY__AUTH_ENABLED": "false",
        "AME_SECURITY__RATE_LIMIT__ENABLED": "false",
        "AME_JOBS__CONCURRENCY": "1",
        "AME_JOBS__LEASE_S": "20",
        "AME_JOBS__HEARTBEAT_S": "2",
    }
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _serve(env, port)
    try:
        _wait_ready(url, proc)
        # Several long documents keep the single worker busy; kill while jobs are in flight.
        note = ("Patient seen for follow-up. Blood pressure 150/90. Continue amlodipine 5 mg daily. " * 400).encode()
        job_ids = [
            httpx.post(f"{url}/upload", files={"files": (f"{i}.txt", note, "text/plain")}, timeout=60).json()["job_id"]
            for i in range(3)
        ]
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/job/{job_ids[0]}", timeout=10).json()["status"] == "queued":
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

    proc = _serve(env, port)
    try:
        _wait_ready(url, proc)
        for job_id in job_ids:
            deadline = time.monotonic() + 240
            while True:
                job = httpx.get(f"{url}/job/{job_id}", timeout=60).json()
                if job["status"] in ("completed", "failed"):
                    break
                assert job["status"] in ("queued", "running"), job
                assert time.monotonic() < deadline, "job neither finished nor failed after restart"
                time.sleep(0.2)
            if job["status"] == "failed":
                assert job["error"]["code"] == "JOB_ATTEMPTS_EXHAUSTED"
                assert job["error"]["message"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


@pytest.mark.timeout(1500)
async def test_stopping_the_app_gracefully_hands_running_jobs_back_and_the_next_start_finishes_them(
    settings_factory,
) -> None:
    settings = settings_factory(jobs={"concurrency": 1})
    async with running_app(settings) as client:
        started = asyncio.Event()

        async def stuck(ctx):
            started.set()
            await asyncio.sleep(3600)

        client.app.state.services.runner.register("upload", stuck)
        running = (await client.post("/upload", files={"files": ("a.txt", b"a", "text/plain")})).json()["job_id"]
        await asyncio.wait_for(started.wait(), 30)
        queued = (await client.post("/upload", files={"files": ("b.txt", b"b", "text/plain")})).json()["job_id"]
        sessionmaker = client.app.state.services.sessionmaker
        async with sessionmaker() as session:
            assert (await session.get(Job, running)).status == "running"
    engine = create_engine(settings.database)
    async with create_sessionmaker(engine)() as session:
        handed_back = await session.get(Job, running)
        assert (handed_back.status, handed_back.lease_owner) == ("queued", None)
    await engine.dispose()
    async with running_app(settings) as client:
        # The first pipeline run of a process loads the models: minutes on a busy machine.
        job = await wait_for_job(client, running, timeout=600)
        assert job["status"] == "completed" and job["error"] is None
        assert (await wait_for_job(client, queued, timeout=600))["status"] == "completed"
