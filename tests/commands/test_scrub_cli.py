"""`ai-med-extract scrub INPUT.jsonl -o OUTPUT.jsonl`: one output line per input line, offsets into the input."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from ai_med_extract.cli import app


def test_scrub_command_writes_scrubbed_jsonl_with_input_offsets(tmp_path: Path) -> None:
    notes = [
        {"id": "a", "text": "Seen by Dr. Gillan on 7/22. Foley patent."},
        {"id": "b", "text": ""},
        {"id": "c", "text": "Daughter Susan called 410-555-9876."},
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(n) + "\n" for n in notes))
    target = tmp_path / "out.jsonl"
    result = CliRunner().invoke(app, ["scrub", str(source), "-o", str(target), "--no-ner"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a", "b", "c"]
    first = rows[0]
    assert "Gillan" not in first["text"] and "Foley patent" in first["text"]
    assert {notes[0]["text"][s["start"] : s["end"]] for s in first["spans"]} == {"Gillan", "7/22"}
    assert set(first["spans"][0]) == {"start", "end", "label", "score"}
    assert rows[1] == {"id": "b", "text": "", "spans": []}
