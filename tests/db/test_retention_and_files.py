"""Retention reaches every table holding patient data; the SQLite files are private to their owner."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update

from ai_med_extract.app import _sweep_patient_tables
from ai_med_extract.commands.service import upgrade_database
from ai_med_extract.config import Settings
from ai_med_extract.db.base import utcnow
from ai_med_extract.db.medical import MedicalRecord
from ai_med_extract.db.phi import PhiMapping
from tests.support import running_app

NOTE = "Jane Roe, SSN 123-45-6789. Type 2 diabetes. Metformin 500 mg twice daily."


async def test_old_medical_records_and_phi_mappings_are_removed_and_fresh_ones_stay(
    client: httpx.AsyncClient,
) -> None:
    records = [(await client.post("/extract_medical_data", json={"text": NOTE})).json()["record_id"] for _ in range(2)]
    mappings = [(await client.post("/scrub_phi", json={"text": NOTE, "operator": "reversible"})).json()
                for _ in range(2)]
    services = client.app.state.services  # type: ignore[attr-defined]
    old = utcnow() - timedelta(hours=services.settings.storage.retention_hours + 1)
    async with services.sessionmaker() as session, session.begin():
        await session.execute(update(MedicalRecord).where(MedicalRecord.id == records[0]).values(created_at=old))
        await session.execute(update(PhiMapping).where(PhiMapping.id == mappings[0]["mapping_id"]).values(created_at=old))

    removed = await _sweep_patient_tables(services)

    assert removed == {"medical_records": 1, "phi_mappings": 1}
    gone = await client.get("/get_updated_medical_data", params={"record_id": records[0]})
    kept = await client.get("/get_updated_medical_data", params={"record_id": records[1]})
    assert gone.status_code == 404 and kept.status_code == 200
    undo = [await client.post("/scrub_phi/reidentify", json={"mapping_id": m["mapping_id"], "text": m["text"]})
            for m in mappings]
    assert [r.status_code for r in undo] == [404, 200]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_sqlite_database_and_its_journal_are_0600(
    settings_factory: Callable[..., Settings], tmp_path: Path, database_url: str
) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("file modes concern the SQLite file")
    target = tmp_path / "fresh" / "service.db"
    upgrade_database(f"sqlite+aiosqlite:///{target}")

    async def serve_one_upload() -> dict[str, int]:
        async with running_app(settings_factory(database={"url": f"sqlite+aiosqlite:///{target}"})) as client:
            await client.post("/upload", files={"files": ("n.txt", b"x", "text/plain")})
            return {p.name: _mode(p) for p in target.parent.iterdir() if p.name.startswith("service.db-")}

    journal = asyncio.run(serve_one_upload())
    assert journal  # WAL mode keeps a -wal and a -shm file while the service runs
    assert set(journal.values()) == {0o600}
    assert _mode(target) == 0o600


def test_an_existing_world_readable_database_is_narrowed_on_upgrade(tmp_path: Path) -> None:
    target = tmp_path / "old.db"
    target.touch()
    os.chmod(target, 0o644)
    upgrade_database(f"sqlite+aiosqlite:///{target}")
    assert _mode(target) == 0o600
