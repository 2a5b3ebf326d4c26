"""A long generation holds no audit lock: another client's audited requests complete while it runs.

The generation runs on a backend that subclasses the real text fallback and waits, between its
first and its next token, until the test lets it go on. While it waits, a second client uploads a
document and reads its job (both audited). They must complete before the generation is let go,
on SQLite and on PostgreSQL, and the audit trail must show the generation's intent before their rows
and its outcome after them.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from ai_med_extract.audit.trail import verify_chain
from ai_med_extract.db.tables import AuditLog
from ai_med_extract.inference import residency as pool_module
from ai_med_extract.inference.backends.base import GenerationCancelled
from ai_med_extract.inference.backends.fallback import FallbackBackend
from ai_med_extract.inference.catalogue import Catalogue, ModelType
from ai_med_extract.inference.pool import ModelPool
from ai_med_extract.inference.types import GenerationRequest
from ai_med_extract.security.keyring import Keyring
from tests.conftest import TEST_SECRET
from tests.support import parse_sse

NOTE = "Admitted with pneumonia. Treated with amoxicillin. Chest X-ray improved. Discharged home."


class GatedBackend(FallbackBackend):
    """The fallback backend, held after its first token until ``release`` is set."""

    started = threading.Event()
    release = threading.Event()

    def stream(self, req: GenerationRequest, cancel: threading.Event) -> Iterator[str]:
        for index, piece in enumerate(super().stream(req, cancel)):
            yield piece
            if index == 0:
                type(self).started.set()
                while not type(self).release.wait(0.05):
                    if cancel.is_set():
                        raise GenerationCancelled


@pytest.fixture
async def gated_pool(client: httpx.AsyncClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    GatedBackend.started = threading.Event()
    GatedBackend.release = threading.Event()
    real = pool_module.backend_class
    monkeypatch.setattr(
        pool_module, "backend_class", lambda kind: GatedBackend if kind is ModelType.fallback else real(kind)
    )
    catalogue = Catalogue.from_dict(
        {"default_model": "slow", "patient_summary_models": [{"name": "slow", "type": "fallback"}]},
        base_dir=tmp_path,
    )
    pool = ModelPool(catalogue)
    services = client.app.state.services  # type: ignore[attr-defined]
    previous = services.agents.pool
    services.agents.pool = pool
    yield pool
    GatedBackend.release.set()
    services.agents.pool = previous
    await pool.close()


async def _other_client_work(client: httpx.AsyncClient) -> list[int]:
    upload = await client.post("/upload", files={"files": ("n.txt", b"Cough for a week.", "text/plain")},
                               data={"scrub": "false", "extract": "false"}, headers={"User-Agent": "other"})
    read = await client.get(f"/job/{upload.json()['job_id']}", headers={"User-Agent": "other"})
    ready = await client.get("/health/ready")
    return [upload.status_code, read.status_code, ready.status_code]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_a_long_generation_does_not_hold_up_another_clients_audited_requests(
    client: httpx.AsyncClient, gated_pool: ModelPool, stream: bool
) -> None:
    generation = asyncio.create_task(
        client.post("/api/generate_summary", json={"text": NOTE, "max_tokens": 64, "stream": stream},
                    headers={"User-Agent": "generator"})
    )
    assert await asyncio.to_thread(GatedBackend.started.wait, 120), "the generation never started"

    # A guard against a hang only (the old behaviour on PostgreSQL): no speed is asserted.
    statuses = await asyncio.wait_for(_other_client_work(client), timeout=120)

    assert statuses == [202, 200, 200]
    assert not generation.done(), "the generation was let go before the other client's requests finished"
    GatedBackend.release.set()
    response = await generation
    assert response.status_code == 200
    if stream:
        assert parse_sse(response.text)[-1]["event"] == "done"
    else:
        assert response.json()["summary"]

    services = client.app.state.services  # type: ignore[attr-defined]
    async with services.sessionmaker() as session:
        rows = list((await session.execute(select(AuditLog).order_by(AuditLog.id))).scalars())
        report = await verify_chain(session, Keyring.from_secret(TEST_SECRET.encode()))
    generator = [r for r in rows if r.user_agent == "generator"]
    other = [r for r in rows if r.user_agent == "other"]
    intent, outcome = generator
    assert intent.action == outcome.action == "summary.generate"
    assert intent.response_status == 102 and intent.phi_accessed is True
    assert outcome.response_status == 200 and outcome.request_data["intent"] == intent.id
    assert {r.action for r in other} == {"document.upload", "job.read"}
    assert intent.id < min(r.id for r in other) and max(r.id for r in other) < outcome.id
    assert report.ok
