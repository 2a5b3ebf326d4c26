"""What the page's source view rests on: each caller's findings index the text that caller is given.

The page highlights a finding at ``medical.source``'s text; a reader is given only the de-identified
text, so its findings (and the grounding extension of each FHIR resource built from them) must point
into ``phi.text``, and findings read from the identified text must not reach it at all.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from ai_med_extract.agents.medical.fhir import GROUNDING_URL
from ai_med_extract.security.role import Role
from tests.support import running_app

NOTE = (
    "Clinic note 03/14/2024\n"
    "Patient: John Smith   MRN: 4829173   Phone: (555) 201-7788\n"
    "History: type 2 diabetes mellitus and hypertension. Seen by Dr. Alice Brown.\n"
    "Medications: metformin 500 mg PO BID; lisinopril 10 mg daily.\n"
    "Allergies: penicillin (rash).\n"
    "Vitals: BP 142/88, HR 76.\n"
)
LISTS = ("problems", "medications", "procedures", "labs", "vitals", "allergies")


async def _keys(client: httpx.AsyncClient) -> dict[str, dict[str, str]]:
    services = client.app.state.services  # type: ignore[attr-defined]
    headers = {}
    async with services.sessionmaker() as session, session.begin():
        for role in (Role.clinician, Role.reader):
            _, token = await services.keys.create(session, name=f"offsets-{role.value}", role=role)
            headers[role.value] = {"X-API-Key": token}
    return headers


async def _upload(client: httpx.AsyncClient, headers: dict[str, str], **form: str) -> str:
    response = await client.post(
        "/upload", files={"files": ("note.txt", NOTE.encode(), "text/plain")}, data=form, headers=headers
    )
    assert response.status_code == 202, response.text
    job_id: str = response.json()["job_id"]
    for _ in range(2400):  # the job runs in this process; a few seconds of rules and scrubbing
        status = (await client.get(f"/job/{job_id}", headers=headers)).json()["status"]
        if status in ("completed", "failed", "cancelled"):
            break
        await asyncio.sleep(0.05)
    assert status == "completed", status
    return job_id


def _items(medical: dict[str, Any]) -> list[dict[str, Any]]:
    return [item for name in LISTS for item in medical.get(name) or []]


def _spans(bundle: dict[str, Any]) -> list[tuple[int, int]]:
    spans = []
    for entry in bundle["entry"]:
        for ext in entry["resource"].get("extension") or []:
            if ext["url"] == GROUNDING_URL:
                values = {e["url"]: e.get("valueInteger") for e in ext["extension"]}
                spans.append((values["start"], values["end"]))
    return spans


async def test_a_readers_findings_point_into_the_de_identified_text_it_is_given(settings_factory) -> None:
    settings = settings_factory(security={"auth_enabled": True}, phi={"ner": False})
    async with running_app(settings) as client:
        keys = await _keys(client)
        job_id = await _upload(client, keys["clinician"])
        for role in ("reader", "clinician"):
            response = await client.get(f"/job/{job_id}", headers=keys[role])
            assert response.status_code == 200
            [doc] = response.json()["result"]["documents"]
            shown = doc["phi"]["text"]
            assert "John Smith" not in shown and "4829173" not in shown
            assert ("text" in doc) is (role == "clinician")
            medical = doc["medical"]
            assert medical["source"] == "phi.text"
            items = _items(medical)
            assert {"metformin", "hypertension"} <= {item["name"] for item in items if "name" in item}
            for item in items:
                assert shown[item["start"] : item["end"]] == item["text"], (role, item["id"])
            spans = _spans(medical["fhir"])
            assert len(spans) == len(items)
            assert sorted(spans) == sorted((item["start"], item["end"]) for item in items)


async def test_findings_read_from_the_identified_text_are_withheld_from_a_reader(settings_factory) -> None:
    settings = settings_factory(security={"auth_enabled": True}, phi={"ner": False})
    async with running_app(settings) as client:
        keys = await _keys(client)
        job_id = await _upload(client, keys["clinician"], scrub="false")
        owner = (await client.get(f"/job/{job_id}", headers=keys["clinician"])).json()["result"]["documents"][0]
        assert owner["medical"]["source"] == "text"
        for item in _items(owner["medical"]):
            assert owner["text"][item["start"] : item["end"]] == item["text"]

        response = await client.get(f"/job/{job_id}", headers=keys["reader"])
        assert response.status_code == 200
        [doc] = response.json()["result"]["documents"]
        assert "text" not in doc and "phi" not in doc
        assert doc["medical"] == {
            "withheld": "IDENTIFIED_DATA_WITHHELD", "source": "text", "counts": owner["medical"]["counts"],
        }
        assert "John Smith" not in response.text and "metformin 500 mg" not in response.text
