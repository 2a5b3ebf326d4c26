"""No patient data in logs: a note with a planted name and SSN goes through the whole pipeline and
neither appears in any log record (message or structured field) of the run, at any level."""

from __future__ import annotations

import logging

import pytest

from tests.support import running_app, wait_for_job

NAME = "Xavier Montgomery-Okafor"
SSN = "518-72-9364"
NOTE = f"""PATIENT: {NAME}   SSN: {SSN}
HPI: 58 y/o man with hypertension and type 2 diabetes. Denies chest pain.
Meds: metformin 500 mg PO BID; lisinopril 10 mg daily.
Plan: recheck HbA1c in 3 months. Contact {NAME} at home.
"""


async def test_planted_name_and_ssn_never_reach_the_logs(
    settings_factory, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = settings_factory(logging={"level": "DEBUG", "json_format": True})
    async with running_app(settings) as client:
        response = await client.post("/upload", files={"files": (f"{NAME}.txt", NOTE.encode(), "text/plain")})
        assert response.status_code == 202
        job = await wait_for_job(client, response.json()["job_id"])
        assert job["status"] == "completed", job
        # The service did see the note: its result carries the text back to the authorised caller.
        assert SSN in job["result"]["documents"][0]["text"]
        await client.get(f"/job/{job['job_id']}/events")
        bad = await client.post("/scrub_phi", json={"text": NOTE, "nonsense": {"x": NAME}})
        assert bad.status_code < 500
    assert caplog.records, "the run must have produced log records to check"
    pieces = [NAME, "Montgomery", "Okafor", SSN, "518-72", "72-9364"]
    for record in caplog.records:
        flat = record.getMessage() + " " + " ".join(str(v) for v in record.__dict__.values())
        for piece in pieces:
            assert piece not in flat, f"{record.name} logged patient data"
    out, err = capfd.readouterr()
    for piece in pieces:
        assert piece not in out and piece not in err
