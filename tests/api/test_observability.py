"""Health probes, Prometheus metrics and the error envelope."""

from __future__ import annotations

import httpx

from tests.support import running_app, wait_for_job


async def test_liveness_and_readiness_report_each_check(client: httpx.AsyncClient) -> None:
    live = await client.get("/health/live")
    assert live.status_code == 200 and live.json()["status"] == "alive"
    ready = await client.get("/health/ready")
    assert ready.status_code == 200
    checks = ready.json()["checks"]
    assert checks["database"] == "ok" and checks["file_storage"] == "ok" and checks["job_runner"] == "ok"
    assert checks["model_manager"] in ("ok", "degraded")


async def test_readiness_fails_when_the_database_is_gone(settings_factory, tmp_path) -> None:
    settings = settings_factory()
    async with running_app(settings) as client:
        # Point the service at a database server that does not answer.
        from ai_med_extract.config import DatabaseSettings
        from ai_med_extract.db.engine import create_engine, create_sessionmaker

        broken = create_engine(DatabaseSettings(url="postgresql+asyncpg://nobody@127.0.0.1:1/none"))
        client.app.state.services.sessionmaker = create_sessionmaker(broken)
        response = await client.get("/health/ready")
        assert response.status_code == 503
        assert response.json()["checks"]["database"] == "error"
        await broken.dispose()


async def test_metrics_count_requests_by_route_template_and_jobs(client: httpx.AsyncClient) -> None:
    r = await client.post("/upload", files={"files": ("n.txt", b"metrics note", "text/plain")})
    await wait_for_job(client, r.json()["job_id"])
    body = (await client.get("/metrics")).text
    assert 'http_requests_total{endpoint="/upload",method="POST",status="202"}' in body
    assert 'endpoint="/job/{job_id}"' in body  # templates, never ids
    assert r.json()["job_id"] not in body
    assert "job_queue_depth" in body
    assert 'jobs{state="completed"} 1.0' in body
    assert 'jobs{state="queued"} 0.0' in body
    assert 'jobs_finished_total{kind="upload",state="completed"}' in body
    assert "http_request_duration_seconds_bucket" in body


async def test_unknown_route_and_method_use_the_error_envelope(client: httpx.AsyncClient) -> None:
    missing = await client.get("/no-such-route")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "NOT_FOUND"
    wrong = await client.put("/upload")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "METHOD_NOT_ALLOWED"


async def test_an_unexpected_error_is_a_500_without_its_text(client: httpx.AsyncClient) -> None:
    async def explode(ctx):
        raise RuntimeError("Secret patient detail 987-65-4321")

    client.app.state.services.runner.register("upload", explode)
    r = await client.post("/upload", files={"files": ("n.txt", b"x", "text/plain")})
    job = await wait_for_job(client, r.json()["job_id"])
    assert job["status"] == "failed"
    assert job["error"]["code"] == "INTERNAL_ERROR"
    assert "987-65-4321" not in str(job)
