"""Upload -> job -> SSE -> result, cancellation, and the bad-input answers of the job routes."""

from __future__ import annotations

import asyncio

import httpx

from tests.support import parse_sse, running_app, wait_for_job

NOTE = "Pt seen in clinic today. BP 128/82. Continue lisinopril 10 mg daily.\n"


async def upload_text(client: httpx.AsyncClient, text: str = NOTE, name: str = "note.txt") -> str:
    response = await client.post("/upload", files={"files": (name, text.encode(), "text/plain")})
    assert response.status_code == 202, response.text
    body = response.json()
    assert response.headers["location"] == f"/job/{body['job_id']}"
    return body["job_id"]


async def test_upload_answers_202_and_the_job_completes_with_the_text(client: httpx.AsyncClient) -> None:
    job_id = await upload_text(client)
    job = await wait_for_job(client, job_id)
    assert job["status"] == "completed", job
    assert job["progress"] == 100.0
    [document] = job["result"]["documents"]
    assert document["text"] == NOTE
    assert job["summary"]["documents"] == 1


async def test_sse_stream_reports_progress_and_ends_with_complete(client: httpx.AsyncClient) -> None:
    job_id = await upload_text(client)
    response = await client.get(f"/job/{job_id}/events")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.text)
    kinds = [e["event"] for e in events]
    assert kinds[-1] == "complete"
    assert "progress" in kinds
    progress = [e["data"] for e in events if e["event"] == "progress"]
    assert all({"stage", "percent", "message"} <= set(p) for p in progress)
    assert progress[-1]["percent"] == 100.0
    ids = [int(e["id"]) for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


async def test_sse_resumes_after_last_event_id(client: httpx.AsyncClient) -> None:
    job_id = await upload_text(client)
    everything = parse_sse((await client.get(f"/job/{job_id}/events")).text)
    middle = everything[len(everything) // 2]["id"]
    resumed = parse_sse((await client.get(f"/job/{job_id}/events", headers={"Last-Event-ID": middle})).text)
    assert [e["id"] for e in resumed] == [e["id"] for e in everything if int(e["id"]) > int(middle)]
    assert resumed[-1]["event"] == "complete"


async def test_multiple_files_in_one_upload_give_one_result_each(client: httpx.AsyncClient) -> None:
    files = [("files", (f"n{i}.txt", f"note {i}\n".encode(), "text/plain")) for i in range(3)]
    response = await client.post("/upload", files=files)
    assert response.status_code == 202
    job = await wait_for_job(client, response.json()["job_id"])
    assert [d["text"] for d in job["result"]["documents"]] == ["note 0\n", "note 1\n", "note 2\n"]


async def test_cancelling_a_queued_job_stops_it_before_it_runs(settings_factory) -> None:
    # One worker, busy with a long job, so the second job stays queued until we cancel it.
    settings = settings_factory(jobs={"concurrency": 1})
    async with running_app(settings) as client:
        gate = asyncio.Event()
        pipeline = client.app.state.services.runner._handlers["upload"]

        async def slow(ctx):
            await gate.wait()
            return await pipeline(ctx)

        client.app.state.services.runner.register("upload", slow)
        first = await upload_text(client)
        second = await upload_text(client)
        response = await client.delete(f"/job/{second}")
        assert response.status_code == 200
        assert response.json()["status"] == "cancelled"
        gate.set()
        assert (await wait_for_job(client, first))["status"] == "completed"
        job = await wait_for_job(client, second)
        assert job["status"] == "cancelled"
        assert job["error"]["code"] == "JOB_CANCELLED"
        events = parse_sse((await client.get(f"/job/{second}/events")).text)
        assert events[-1]["event"] == "error" and events[-1]["data"]["code"] == "JOB_CANCELLED"


async def test_cancelling_a_running_job_marks_it_cancelled(client: httpx.AsyncClient) -> None:
    started = asyncio.Event()

    async def endless(ctx):
        started.set()
        while True:
            await ctx.run_blocking(lambda: None)
            await asyncio.sleep(0.01)

    client.app.state.services.runner.register("upload", endless)
    job_id = await upload_text(client)
    await asyncio.wait_for(started.wait(), 30)
    response = await client.delete(f"/job/{job_id}")
    assert response.json()["status"] == "cancelled"
    job = await wait_for_job(client, job_id)
    assert job["status"] == "cancelled"


async def test_deleting_a_finished_job_removes_it_and_its_files(client: httpx.AsyncClient) -> None:
    job_id = await upload_text(client)
    await wait_for_job(client, job_id)
    store = client.app.state.services.store
    assert any((store.root / "objects" / "jobs" / job_id).iterdir())
    assert (await client.delete(f"/job/{job_id}")).json()["status"] == "deleted"
    assert not (store.root / "objects" / "jobs" / job_id).exists()
    response = await client.get(f"/job/{job_id}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "JOB_NOT_FOUND"


async def test_a_job_over_its_timeout_fails_with_job_timeout(settings_factory) -> None:
    async with running_app(settings_factory(jobs={"timeout_s": 0.5})) as client:

        async def stuck(ctx):
            await asyncio.sleep(30)
            return {}

        client.app.state.services.runner.register("upload", stuck)
        job = await wait_for_job(client, await upload_text(client))
        assert job["status"] == "failed"
        assert job["error"]["code"] == "JOB_TIMEOUT"


async def test_a_full_queue_answers_503_with_retry_after_and_writes_no_job(settings_factory) -> None:
    async with running_app(settings_factory(jobs={"concurrency": 1, "queue_size": 1})) as client:
        gate = asyncio.Event()

        async def blocked(ctx):
            await gate.wait()
            return {"documents": []}

        client.app.state.services.runner.register("upload", blocked)
        await upload_text(client)  # running
        await asyncio.sleep(0.2)
        await upload_text(client)  # fills the queue
        response = await client.post("/upload", files={"files": ("n.txt", b"x", "text/plain")})
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "QUEUE_FULL"
        assert int(response.headers["retry-after"]) >= 1
        from sqlalchemy import func, select

        from ai_med_extract.db.tables import Job

        async with client.app.state.services.sessionmaker() as session:
            assert (await session.execute(select(func.count()).select_from(Job))).scalar_one() == 2
        gate.set()


async def test_empty_upload_is_refused_with_empty_file(client: httpx.AsyncClient) -> None:
    response = await client.post("/upload", files={"files": ("empty.txt", b"", "text/plain")})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "EMPTY_FILE"


async def test_upload_without_a_file_field_is_refused_with_file_required(client: httpx.AsyncClient) -> None:
    response = await client.post("/upload", data={"scrub": "true"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "FILE_REQUIRED"


async def test_oversized_upload_is_refused_with_413_and_nothing_is_written(settings_factory) -> None:
    async with running_app(settings_factory(upload={"max_bytes": 1000})) as client:
        response = await client.post("/upload", files={"files": ("big.txt", b"a" * 5000, "text/plain")})
        assert response.status_code == 413
        assert response.json()["error"]["code"] in ("FILE_TOO_LARGE", "PAYLOAD_TOO_LARGE")
        store = client.app.state.services.store
        assert not (store.root / "objects" / "jobs").exists() or not any((store.root / "objects" / "jobs").iterdir())


async def test_unknown_job_id_is_404_with_job_not_found(client: httpx.AsyncClient) -> None:
    for job_id in ("00000000-0000-0000-0000-000000000000", "not-a-uuid"):
        response = await client.get(f"/job/{job_id}")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "JOB_NOT_FOUND"
    response = await client.get("/job/00000000-0000-0000-0000-000000000000/events")
    assert response.status_code == 404


async def test_malformed_last_event_id_is_400(client: httpx.AsyncClient) -> None:
    job_id = await upload_text(client)
    response = await client.get(f"/job/{job_id}/events", headers={"Last-Event-ID": "abc"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_LAST_EVENT_ID"


async def test_binary_file_is_refused_with_415(client: httpx.AsyncClient) -> None:
    response = await client.post("/upload", files={"files": ("x.bin", bytes(range(256)) * 4, "application/octet-stream")})
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "UNSUPPORTED_FORMAT"


async def test_uploaded_documents_are_encrypted_at_rest(client: httpx.AsyncClient) -> None:
    secret = "Distinctive sentence kept only in ciphertext."
    job_id = await upload_text(client, secret)
    await wait_for_job(client, job_id)
    root = client.app.state.services.store.root
    for path in root.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes()


def _open_streams(url: str) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("sse_streams_open "):
            return float(line.split()[1])
    raise AssertionError("sse_streams_open missing")


async def test_the_event_stream_stops_when_the_client_disconnects(live_server) -> None:
    with live_server(jobs={"concurrency": 1}) as server:
        gate = asyncio.Event()
        runner = server.app.state.services.runner
        pipeline = runner._handlers["upload"]

        async def held(ctx):
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(gate.wait(), gate_loop))
            return await pipeline(ctx)

        gate_loop = asyncio.get_running_loop()
        runner.register("upload", held)
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            job_id = (await client.post("/upload", files={"files": ("n.txt", b"x", "text/plain")})).json()["job_id"]
            baseline = await asyncio.to_thread(_open_streams, server.url)
            async with client.stream("GET", f"/job/{job_id}/events") as response:
                async for line in response.aiter_lines():
                    if line.startswith("data:"):
                        # One event received and the stream still open; then hang up.
                        assert await asyncio.to_thread(_open_streams, server.url) == baseline + 1
                        break
            for _ in range(100):
                if await asyncio.to_thread(_open_streams, server.url) == baseline:
                    break
                await asyncio.sleep(0.1)
            assert await asyncio.to_thread(_open_streams, server.url) == baseline
            gate.set()


async def test_concurrent_events_of_one_job_keep_one_ordered_stream(client: httpx.AsyncClient) -> None:
    async def chatty(ctx):
        await asyncio.gather(
            *[ctx.emit("token", {"text": f"t{i}"}) for i in range(20)],
            *[ctx.progress("work", i * 5, f"step {i}") for i in range(20)],
        )
        return {"documents": []}

    client.app.state.services.runner.register("upload", chatty)
    job_id = await upload_text(client)
    job = await wait_for_job(client, job_id)
    assert job["status"] == "completed", job
    events = parse_sse((await client.get(f"/job/{job_id}/events")).text)
    assert sorted(e["data"]["text"] for e in events if e["event"] == "token") == sorted(f"t{i}" for i in range(20))
    assert [int(e["id"]) for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["event"] == "complete"
