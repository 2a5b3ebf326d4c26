from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from ai_med_extract.cli import app


def test_extract_writes_one_line_per_input_with_fhir_and_reports_bad_lines(tmp_path: Path) -> None:
    source = tmp_path / "notes.jsonl"
    source.write_text(
        json.dumps({"id": "a", "text": "HTN. Lisinopril 10 mg daily. Denies chest pain."}) + "\n"
        + "not json\n"
        + json.dumps({"id": "b", "text": ""}) + "\n"
        + json.dumps({"id": "c"}) + "\n"
    )
    out = tmp_path / "out.jsonl"

    result = CliRunner().invoke(app, ["extract", str(source), "-o", str(out), "--fhir"])

    assert result.exit_code == 1, result.output  # some lines failed; the others were written
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r.get("id") for r in rows] == ["a", None, "b", "c"]
    first = rows[0]
    assert first["medical"]["medications"][0]["name"] == "lisinopril"
    assert first["medical"]["medications"][0]["frequency"] == "QD"
    assert first["fhir"]["resourceType"] == "Bundle"
    assert rows[1]["error"]["code"] == "INVALID_JSON"
    assert rows[2]["medical"]["problems"] == []
    assert rows[3]["error"]["code"] == "NO_TEXT"
    assert "2 extracted, 2 failed" in result.output


def test_extract_exports_fhir_resources_as_bulk_data_ndjson(tmp_path: Path) -> None:
    source = tmp_path / "notes.jsonl"
    source.write_text(
        json.dumps({"id": "a", "text": "HTN. Lisinopril 10 mg daily. BP 142/90. NKDA."}) + "\n"
        + json.dumps({"id": "b", "text": "Diabetes on metformin 500 mg BID. A1c 8.1%."}) + "\n"
    )
    export = tmp_path / "bulk"

    result = CliRunner().invoke(app, ["extract", str(source), "-o", str(tmp_path / "out.jsonl"), "--ndjson",
                                      str(export)])

    assert result.exit_code == 0, result.output
    files = {p.name: p.read_text().splitlines() for p in export.iterdir()}
    assert {"Patient.ndjson", "Condition.ndjson", "MedicationStatement.ndjson", "Observation.ndjson",
            "AllergyIntolerance.ndjson"} <= set(files)
    patients = {json.loads(line)["id"] for line in files["Patient.ndjson"]}
    assert len(patients) == 2
    for name, lines in files.items():
        for line in lines:
            resource = json.loads(line)
            assert f"{resource['resourceType']}.ndjson" == name
            subject = resource.get("subject") or resource.get("patient")
            if subject:
                assert subject["reference"].removeprefix("Patient/") in patients
