"""GET /audit (admin) pages through the trail; GET /audit/export and `audit export` give FHIR
AuditEvent NDJSON. Both carry metadata only and are audited themselves."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from typer.testing import CliRunner

from ai_med_extract.cli import app as cli_app
from ai_med_extract.config import Settings
from ai_med_extract.security.role import Role
from tests.conftest import TEST_SECRET
from tests.support import running_app

MARKER = "Zebulon Quartermaine 123-45-6789"


async def test_admins_page_through_the_trail_and_others_are_refused(settings_factory: Callable[..., Settings]) -> None:
    async with running_app(settings_factory(security={"auth_enabled": True})) as client:
        services = client.app.state.services  # type: ignore[attr-defined]
        async with services.sessionmaker() as session, session.begin():
            _, admin = await services.keys.create(session, name="admin", role=Role.admin)
            _, clinician = await services.keys.create(session, name="clin", role=Role.clinician)
        for _ in range(3):
            await client.post("/upload", files={"files": ("n.txt", MARKER.encode(), "text/plain")},
                              headers={"X-API-Key": clinician}, data={"scrub": "false", "extract": "false"})
        refused = await client.get("/audit", headers={"X-API-Key": clinician})
        first = (await client.get("/audit", params={"limit": 2}, headers={"X-API-Key": admin})).json()
        second = (await client.get("/audit", params={"limit": 50, "after_id": first["next_after_id"]},
                                   headers={"X-API-Key": admin})).json()
        export = await client.get("/audit/export", headers={"X-API-Key": admin})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "ROLE_REQUIRED"
    assert [r["action"] for r in first["rows"]] == ["document.upload", "document.upload"]
    assert second["rows"][0]["id"] > first["rows"][-1]["id"]
    assert "audit.read" in [r["action"] for r in second["rows"]]  # the first page's read, audited
    events = [json.loads(line) for line in export.text.splitlines()]
    assert export.headers["content-type"].startswith("application/fhir+ndjson")
    assert {e["resourceType"] for e in events} == {"AuditEvent"}
    assert [int(e["id"]) for e in events] == sorted(int(e["id"]) for e in events)
    upload = next(e for e in events if e["subtype"][0]["code"] == "document.upload")
    assert upload["action"] == "C" and upload["outcome"] == "0" and upload["type"]["code"] == "110110"
    assert upload["agent"][0]["who"]["identifier"]["value"].endswith(":clin")
    assert MARKER.split()[1] not in export.text and "123-45-6789" not in export.text


def test_the_export_command_writes_one_audit_event_a_line(
    settings_factory: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch, database_url: str, tmp_path
) -> None:
    settings = settings_factory()
    for name, value in {
        "AME_ENVIRONMENT": "test", "AME_DATABASE__URL": database_url,
        "AME_STORAGE__DIRECTORY": str(settings.storage.directory),
        "AME_STORAGE__ENCRYPTION_KEY": settings.storage.encryption_key.get_secret_value(),
        "AME_SECURITY__SECRET_KEY": TEST_SECRET,
    }.items():
        monkeypatch.setenv(name, value)
    runner = CliRunner()
    assert runner.invoke(cli_app, ["keys", "create", "--role", "reader"]).exit_code == 0
    out = tmp_path / "audit.ndjson"
    result = runner.invoke(cli_app, ["audit", "export", "--output", str(out)])
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert all(json.loads(line)["resourceType"] == "AuditEvent" for line in lines)
