"""`ai-med-extract summarize RECORD.json`: Markdown by default, JSON with --json, errors as JSON."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from ai_med_extract.cli import app
from tests.agents.summary.synthetic import make_bundle


def test_summarize_prints_the_markdown_summary_of_a_fhir_file(tmp_path: Path) -> None:
    path = tmp_path / "record.json"
    path.write_text(json.dumps(make_bundle(seed=9, years=3)[0]))
    result = CliRunner().invoke(app, ["summarize", str(path), "--model", "template"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("# Patient summary")
    assert "## Guideline checks" in result.output and "generator=template" in result.output


def test_summarize_json_output_and_malformed_input(tmp_path: Path) -> None:
    good = tmp_path / "notes.json"
    good.write_text(json.dumps(["2023-04-01 Asthma. Started salbutamol inhaler."]))
    result = CliRunner().invoke(app, ["summarize", str(good), "--model", "template", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["input"]["kind"] == "notes"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Patient",
                                                                                    "birthDate": "soon"}}]}))
    result = CliRunner().invoke(app, ["summarize", str(bad), "--model", "template"])
    assert result.exit_code == 1
    assert "FHIR_INVALID" in result.output and "soon" not in result.output
