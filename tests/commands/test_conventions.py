"""Every command: `-` reads standard input, no -o writes standard output, choices listed in --help,
one exit rule (0 all good, 1 some inputs failed, 2 usage)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ai_med_extract.cli import app
from ai_med_extract.commands.conventions import ExitCode, exit_code
from tests.fixtures import documents as docs

GOOD = json.dumps({"id": "a", "text": "Seen by Dr. Gillan. Lisinopril 10 mg daily."}) + "\n"
BAD = "not json\n"


def test_the_exit_rule() -> None:
    assert (exit_code(0), exit_code(1), exit_code(7)) == (ExitCode.ok, ExitCode.some_inputs_failed, 1)
    assert ExitCode.usage == 2


@pytest.mark.parametrize(("command", "extra"), [("scrub", ["--no-ner"]), ("extract", [])])
def test_jsonl_commands_read_stdin_and_write_stdout(command: str, extra: list[str]) -> None:
    result = CliRunner().invoke(app, [command, "-", *extra], input=GOOD)

    assert result.exit_code == 0, result.output
    [row] = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert row["id"] == "a" and "error" not in row


@pytest.mark.parametrize(("command", "extra"), [("scrub", ["--no-ner"]), ("extract", [])])
def test_a_failed_line_gives_status_1_and_an_error_line(command: str, extra: list[str], tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"

    result = CliRunner().invoke(app, [command, "-", "-o", str(out), *extra], input=GOOD + BAD)

    assert result.exit_code == 1, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r.get("error", {}).get("code") for r in rows] == [None, "INVALID_JSON"]


@pytest.mark.parametrize(
    ("args", "choices"),
    [
        (["scrub", "--help"], ["redact", "mask", "surrogate"]),
        (["extract", "--help"], ["rules", "llm"]),
        (["summarize", "--help"], ["remove", "flag"]),
        (["keys", "create", "--help"], ["reader", "clinician", "admin"]),
    ],
)
def test_help_lists_the_choices(args: list[str], choices: list[str]) -> None:
    result = CliRunner().invoke(app, args, terminal_width=200)

    assert result.exit_code == 0
    for choice in choices:
        assert choice in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["scrub", "-", "--operator", "shred"],
        ["extract", "-", "--mode", "guess"],
        ["summarize", "-", "--grounding", "maybe"],
        ["scrub", "/nonexistent/notes.jsonl"],
        ["extract-text", "/nonexistent/scan.png"],
        ["summarize", "/nonexistent/record.json"],
        ["scrub", "-", "--no-such-option"],
    ],
)
def test_usage_errors_give_status_2(args: list[str]) -> None:
    assert CliRunner().invoke(app, args, input="").exit_code == 2


def test_extract_text_reads_a_document_from_stdin() -> None:
    result = CliRunner().invoke(app, ["extract-text", "-"], input=docs.text_pdf([["Follow up in 2 weeks"]]))

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "Follow up in 2 weeks"


def test_summarize_reads_stdin_and_writes_the_output_file(tmp_path: Path) -> None:
    notes = json.dumps(["2023-04-01 Asthma. Started salbutamol inhaler."])
    out = tmp_path / "summary.json"

    to_stdout = CliRunner().invoke(app, ["summarize", "-", "--model", "template", "--json"], input=notes)
    to_file = CliRunner().invoke(app, ["summarize", "-", "--model", "template", "--json", "-o", str(out)], input=notes)
    broken = CliRunner().invoke(app, ["summarize", "-", "--model", "template"], input="{not json")

    assert to_stdout.exit_code == 0 and json.loads(to_stdout.stdout)["input"]["kind"] == "notes"
    assert to_file.exit_code == 0 and json.loads(out.read_text())["input"]["kind"] == "notes"
    assert broken.exit_code == 1
