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
