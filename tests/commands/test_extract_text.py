from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from ai_med_extract.cli import app
from tests.fixtures import documents as docs
from tests.support import assert_read


def test_extract_text_writes_text_and_json_per_file_and_reports_failures(tmp_path: Path) -> None:
    note = tmp_path / "note.pdf"
    note.write_bytes(docs.text_pdf([["Blood pressure 128/82 mmHg"], ["Follow up in 2 weeks"]]))
    letter = tmp_path / "letter.docx"
    letter.write_bytes(docs.clinic_docx())
    fake = tmp_path / "fake.pdf"
    fake.write_bytes(docs.HTML_AS_PDF)
    out = tmp_path / "out"

    result = CliRunner().invoke(
        app, ["extract-text", str(note), str(letter), str(fake), "--output", str(out)]
    )

    assert result.exit_code == 1  # one file failed, the others were written
    assert "HTML_NOT_SUPPORTED" in result.output
    assert (out / "note.pdf.txt").read_text() == "Blood pressure 128/82 mmHg\n\nFollow up in 2 weeks"
    assert (out / "letter.docx.txt").read_text() == docs.CLINIC_DOCX_TEXT
    saved = json.loads((out / "note.pdf.json").read_text())
    assert saved["metadata"]["pages"] == 2
    assert [(s["start"], s["end"]) for s in saved["segments"]] == [(0, 26), (28, 48)]
    assert sorted(p.name for p in out.iterdir()) == [
        "letter.docx.json",
        "letter.docx.txt",
        "note.pdf.json",
        "note.pdf.txt",
    ]


def test_extract_text_prints_the_text_without_an_output_folder(tmp_path: Path) -> None:
    scan = tmp_path / "scan.png"
    scan.write_bytes(docs.image_bytes(docs.page_image(["Lisinopril 10 mg daily"])))

    result = CliRunner().invoke(app, ["extract-text", str(scan)])

    assert result.exit_code == 0
    assert_read("Lisinopril 10 mg daily", result.stdout.strip())
