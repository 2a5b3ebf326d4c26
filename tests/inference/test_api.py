"""The model endpoints through the running app, with a real pool on tiny and shipped models."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from ai_med_extract.config import Settings
from ai_med_extract.db.tables import AuditLog
from ai_med_extract.inference.pool import ModelPool
from tests.inference.conftest import gguf_entry
from tests.support import parse_sse, running_app

NOTE = (
    "Patient admitted with community acquired pneumonia. Chest X-ray showed right lower lobe consolidation. "
    "Treated with amoxicillin and clarithromycin. Discharged with oral antibiotics."
)


@pytest.fixture
async def api(
    settings_factory: Callable[..., Settings], tiny_gguf: Path, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    config = tmp_path / "models_config.json"
    config.write_text(
        json.dumps(
            {
                "default_model": "tiny",
                "patient_summary_models": [
                    gguf_entry("tiny", tiny_gguf, n_ctx=2048),
                    gguf_entry("tiny-2", tiny_gguf),
                    {
                        "name": "ov",
                        "type": "openvino",
                        "path": str(tmp_path / "absent-ir"),
                        "fallback": "tiny",
                    },
                ],
            }
        )
    )
    settings = settings_factory(models={"config_path": str(config), "cache_dir": str(tmp_path / "cache")})
    pool = ModelPool.from_settings(settings)
    async with running_app(settings) as client:
        services = client.app.state.services  # type: ignore[attr-defined]
        previous = services.agents.pool
        services.agents.pool = pool
        yield client
        services.agents.pool = previous
    await pool.close()


async def audit_actions(client: httpx.AsyncClient) -> list[tuple[str, bool, dict]]:
    services = client.app.state.services  # type: ignore[attr-defined]
    async with services.sessionmaker() as session:
        rows = (await session.execute(select(AuditLog).order_by(AuditLog.id))).scalars().all()
    return [(r.action, r.phi_accessed, r.request_data or {}) for r in rows]


async def test_model_info_load_and_switch(api: httpx.AsyncClient):
    before = (await api.get("/api/model_info")).json()
    loaded = await api.post("/api/load_model", json={"model_name": "tiny-2"})
    switched = await api.post("/api/switch_model", json={"model_name": "tiny-2"})
    one = (await api.get("/api/model_info", params={"model_name": "tiny-2"})).json()

    assert before["default_model"] == "tiny" and {m["name"] for m in before["models"]} >= {
        "tiny",
        "text-fallback",
    }
    assert loaded.status_code == 200 and loaded.json()["model"]["loaded"] is True
    assert switched.json()["default_model"] == "tiny-2"
    assert one["model"]["default"] is True and one["model"]["context_window"] == 256


async def test_unknown_model_is_a_404_with_a_stable_code(api: httpx.AsyncClient):
    response = await api.post("/api/load_model", json={"model_name": "nope"})

    assert response.status_code == 404 and response.json()["error"]["code"] == "MODEL_NOT_FOUND"


async def test_generate_summary_answers_in_json_and_is_audited_without_text(api: httpx.AsyncClient):
    response = await api.post("/api/generate_summary", json={"text": NOTE, "max_tokens": 8})

    body = response.json()
    assert response.status_code == 200
    assert body["model"] == "tiny" and body["finish_reason"] == "length" and body["fallbacks"] == []
    (action, phi, data), (done, done_phi, outcome) = (await audit_actions(api))[-2:]
    assert action == done == "summary.generate" and phi is True and done_phi is False  # intent, outcome
    assert data["chars"] == len(NOTE) and "pneumonia" not in json.dumps(data)
    assert outcome["completion_tokens"] == body["completion_tokens"] and "pneumonia" not in json.dumps(outcome)


async def test_generate_summary_streams_tokens_over_sse(api: httpx.AsyncClient):
    response = await api.post(
        "/api/generate_summary",
        json={"text": NOTE, "max_tokens": 8},
        headers={"accept": "text/event-stream"},
    )

    events = parse_sse(response.text)
    tokens = [e for e in events if e.get("event") == "token"]
    assert response.headers["content-type"].startswith("text/event-stream")
    assert len(tokens) >= 1 and events[-1]["event"] == "done"


async def test_context_overflow_is_a_422_with_token_counts(api: httpx.AsyncClient):
    response = await api.post("/api/generate_summary", json={"text": NOTE * 20, "max_tokens": 8})

    error = response.json()["error"]
    assert response.status_code == 422 and error["code"] == "CONTEXT_OVERFLOW"
    assert error["details"]["context_window"] == 2048 and "pneumonia" not in error["message"]


async def test_openvino_summary_reports_its_fallback(api: httpx.AsyncClient):
    response = await api.post(
        "/api/patient_summary_openvino",
        json={"patient_data": {"diagnoses": ["pneumonia"], "medications": ["amoxicillin"]}, "max_tokens": 8},
    )

    body = response.json()
    assert response.status_code == 200 and body["model"] == "tiny"
    assert body["fallbacks"] == [{"requested": "ov", "used": "tiny", "reason": "MODEL_FILES_MISSING"}]
    assert (await audit_actions(api))[-1][0] == "summary.patient_openvino"
