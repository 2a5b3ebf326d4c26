"""The production shape: two API processes and two worker processes on one PostgreSQL database,
jobs delivered by procrastinate, events and cancels crossing processes through LISTEN/NOTIFY.

Every process here is a real ``ai-med-extract serve`` or ``ai-med-extract worker``. Leases are
20 s (heartbeat 2 s): short enough that a killed worker's job is taken over within the test, long
enough that a live worker on a busy shared machine never loses one.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import TEST_ENCRYPTION_KEY, TEST_SECRET, _pg_execute, _pg_url
from tests.support import free_port, parse_sse

NOTE = "Patient seen for follow-up. Blood pressure 150/90. Continue amlodipine 5 mg daily.\n"
LONG_NOTE = (NOTE * 400).encode()  # a few seconds of pipeline work per document


class Cluster:
    def __init__(self, database_url: str, dsn: str, root: Path):
        self.dsn = dsn
        self.root = root
        self.env = {
            **os.environ,
            "AME_ENVIRONMENT": "test",
            "AME_DATABASE__URL": database_url,
            "AME_STORAGE__DIRECTORY": str(root / "storage"),  # shared, as a ReadWriteMany volume is
            "AME_STORAGE__ENCRYPTION_KEY": TEST_ENCRYPTION_KEY,
            "AME_SECURITY__SECRET_KEY": TEST_SECRET,
            "AME_SECURITY__AUTH_ENABLED": "false",
            "AME_SECURITY__RATE_LIMIT__ENABLED": "false",
            "AME_JOBS__ENGINE": "procrastinate",
            "AME_JOBS__CONCURRENCY": "1",
            "AME_JOBS__LEASE_S": "20",
            "AME_JOBS__HEARTBEAT_S": "2",
            "AME_JOBS__SHUTDOWN_GRACE_S": "1",
        }
        self.apis: list[tuple[subprocess.Popen[bytes], str, int]] = []
        self.workers: list[subprocess.Popen[bytes]] = []
        self._logs = 0

    def _log(self, name: str) -> Any:
        self._logs += 1
        return open(self.root / f"{name}-{self._logs}.log", "wb")  # noqa: SIM115 - lives with the process

    def start_api(self, port: int | None = None) -> str:
        port = port or free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "ai_med_extract", "serve", "--port", str(port), "--no-bootstrap-key"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=self._log("api"),
        )
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url, proc)
        self.apis.append((proc, url, port))
        return url

    def start_worker(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ai_med_extract", "worker"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=self._log("worker"),
        )
        self.workers.append(proc)
        return proc

    def stop(self) -> None:
        for proc in [p for p, _, _ in self.apis] + self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in [p for p, _, _ in self.apis] + self.workers:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    # -- the database, read directly ----------------------------------------------------------
    def query(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async def run() -> list[asyncpg.Record]:
            conn = await asyncpg.connect(self.dsn)
            try:
                return list(await conn.fetch(sql, *args))
            finally:
                await conn.close()

        return asyncio.run(run())


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 180) -> None:
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


@pytest.fixture(scope="module")
def cluster(postgres: str, pg_template: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    name = f"ame_w_{uuid.uuid4().hex[:12]}"
    _pg_execute(f"CREATE DATABASE {name} TEMPLATE {pg_template}")
    dsn = postgres.rsplit("/", 1)[0] + f"/{name}"
    cluster = Cluster(_pg_url(postgres, name), dsn, tmp_path_factory.mktemp("cluster"))
    try:
        cluster.start_api()
        cluster.start_api()
        cluster.start_worker()
        cluster.start_worker()
        yield cluster
    finally:
        cluster.stop()
        _pg_execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _upload(url: str, *documents: bytes) -> str:
    files = [("files", (f"note{i}.txt", data, "text/plain")) for i, data in enumerate(documents)]
    response = httpx.post(f"{url}/upload", files=files, timeout=60)
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def _wait_job(url: str, job_id: str, timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = httpx.get(f"{url}/job/{job_id}", timeout=30).json()
        if job["status"] in ("completed", "failed", "cancelled"):
            return dict(job)
        assert time.monotonic() < deadline, f"job still {job['status']}"
        time.sleep(0.1)


def _wait_running(cluster: Cluster, job_id: str, timeout: float = 120) -> str:
    """Wait until a worker holds the job and has written progress; return the lease owner."""
    deadline = time.monotonic() + timeout
    while True:
        [row] = cluster.query(
            "SELECT status, lease_owner, (SELECT count(*) FROM job_events e WHERE e.job_id = j.id) AS events "
            "FROM jobs j WHERE id = $1",
            job_id,
        )
        if row["status"] == "running" and row["lease_owner"] and row["events"] >= 2:
            return str(row["lease_owner"])
        assert row["status"] in ("queued", "running"), row["status"]
        assert time.monotonic() < deadline, "job never started"
        time.sleep(0.05)


def _events(url: str, job_id: str) -> list[dict[str, Any]]:
    return parse_sse(httpx.get(f"{url}/job/{job_id}/events", timeout=60).text)


@pytest.mark.timeout(600)
def test_uploads_to_either_api_finish_on_the_workers(cluster: Cluster) -> None:
    (_, api_a, _), (_, api_b, _) = cluster.apis[:2]
    jobs = [_upload(api_a, NOTE.encode()), _upload(api_b, NOTE.encode()), _upload(api_a, NOTE.encode())]
    for job_id in jobs:
        job = _wait_job(api_b, job_id)
        assert job["status"] == "completed", job
        assert job["result"]["documents"][0]["text"] == NOTE
    owners = {row["lease_owner"] for row in cluster.query("SELECT lease_owner FROM jobs WHERE id = ANY($1)", jobs)}
    assert all(owner.startswith("worker:") for owner in owners), owners  # never run inside an API


@pytest.mark.timeout(600)
async def test_an_sse_client_on_one_api_sees_every_event_of_a_job_submitted_to_the_other(cluster: Cluster) -> None:
    (_, api_a, _), (_, api_b, _) = cluster.apis[:2]
    job_id = await asyncio.to_thread(_upload, api_b, LONG_NOTE)
    streamed: list[dict[str, Any]] = []
    async with httpx.AsyncClient(base_url=api_a, timeout=240) as client:
        async with client.stream("GET", f"/job/{job_id}/events") as response:
            buffer = ""
            async for chunk in response.aiter_text():
                buffer += chunk
                blocks = buffer.replace("\r\n", "\n").split("\n\n")
                buffer = blocks.pop()
                streamed.extend(parse_sse("\n\n".join(blocks) + "\n\n"))
                if streamed and streamed[-1]["event"] in ("complete", "error"):
                    break
    assert streamed[-1]["event"] == "complete"
    stored = await asyncio.to_thread(_events, api_b, job_id)
    assert [(e["id"], e["event"], e["data"]) for e in streamed] == [(e["id"], e["event"], e["data"]) for e in stored]
    assert any(e["event"] == "progress" and e["data"]["stage"] == "extract_text" for e in streamed)


@pytest.mark.timeout(600)
def test_cancel_from_the_other_api_stops_a_job_running_on_a_worker(cluster: Cluster) -> None:
    (_, api_a, _), (_, api_b, _) = cluster.apis[:2]
    job_id = _upload(api_a, *[LONG_NOTE] * 6)
    _wait_running(cluster, job_id)
    response = httpx.delete(f"{api_b}/job/{job_id}", timeout=30)
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    job = _wait_job(api_a, job_id)
    assert job["status"] == "cancelled" and job["error"]["code"] == "JOB_CANCELLED"
    assert _events(api_a, job_id)[-1]["data"]["code"] == "JOB_CANCELLED"


@pytest.mark.timeout(600)
def test_a_job_whose_worker_is_killed_completes_once_on_the_other_worker(cluster: Cluster) -> None:
    (_, api_a, _), _ = cluster.apis[:2]
    job_id = _upload(api_a, *[LONG_NOTE] * 6)
    owner = _wait_running(cluster, job_id)
    pid = int(owner.split(":")[2])
    victim = next(p for p in cluster.workers if p.pid == pid)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    cluster.workers.remove(victim)
    try:
        job = _wait_job(api_a, job_id)
        assert job["status"] == "completed", job
        assert len(job["result"]["documents"]) == 6
        [row] = cluster.query("SELECT attempts, lease_owner FROM jobs WHERE id = $1", job_id)
        assert row["attempts"] == 2 and row["lease_owner"] != owner
        documents = cluster.query("SELECT id, status FROM documents WHERE job_id = $1", job_id)
        assert len(documents) == 6 and {d["status"] for d in documents} == {"processed"}
        events = cluster.query("SELECT seq, event, key FROM job_events WHERE job_id = $1 ORDER BY seq", job_id)
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert len({e["key"] for e in events}) == len(events)  # nothing written twice
        assert [e["event"] for e in events].count("complete") == 1
        assert [e["event"] for e in events if e["event"] in ("complete", "error")] == ["complete"]
        audit = cluster.query(
            "SELECT count(*) AS n FROM audit_logs WHERE resource_id = $1 AND action = 'document.upload'", job_id
        )
        assert audit[0]["n"] == 1
        metrics = httpx.get(f"{api_a}/metrics", timeout=30).text
        assert "job_queue_depth" in metrics and "job_leases_expired" in metrics
        retried = next(line for line in metrics.splitlines() if line.startswith("jobs_retried "))
        assert float(retried.split()[1]) >= 1
    finally:
        cluster.start_worker()


@pytest.mark.timeout(600)
def test_restarting_an_api_while_workers_run_its_jobs_interrupts_none(cluster: Cluster) -> None:
    proc, api_a, port = cluster.apis[0]
    jobs = [_upload(api_a, LONG_NOTE, LONG_NOTE) for _ in range(3)]
    _wait_running(cluster, jobs[0])
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    cluster.apis.pop(0)
    api_a = cluster.start_api(port)
    for job_id in jobs:
        job = _wait_job(api_a, job_id)
        assert job["status"] == "completed", job
    rows = cluster.query("SELECT attempts FROM jobs WHERE id = ANY($1)", jobs)
    assert [row["attempts"] for row in rows] == [1, 1, 1]
