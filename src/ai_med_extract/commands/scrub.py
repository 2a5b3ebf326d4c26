"""`ai-med-extract scrub INPUT.jsonl [-o OUTPUT.jsonl] [--workers N]`.

Each input line is ``{"id": ..., "text": ...}`` (optionally ``"patient": ...``); each output line is
``{"id", "text": <scrubbed>, "spans": [{"start", "end", "label", "score"}]}`` with offsets into the
input text. Lines keep their input order. ``--workers`` runs that many processes. ``-`` reads
standard input; without ``-o`` the lines go to standard output. A line that is not a JSON object
with a text gives ``{"id", "error": {"code", "message"}}`` and the status 1 (commands/conventions.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import typer

from ai_med_extract.commands.conventions import (
    Operator,
    check_input,
    finish,
    is_stdin,
    open_text_input,
    open_text_output,
)

_scrubber: Any = None


def _init_worker(operator: str, ner: bool) -> None:
    global _scrubber
    from ai_med_extract.agents.phi.scrubber import PhiScrubber

    _scrubber = (PhiScrubber.default(ner=ner), operator)


def _scrub_line(numbered: tuple[int, str]) -> tuple[bool, str]:
    """(succeeded, output line) for one input line."""
    number, line = numbered
    scrubber, operator = _scrubber
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return False, _error(None, "INVALID_JSON", f"line {number} is not JSON")
    text = record.get("text") if isinstance(record, dict) else None
    if not isinstance(text, str):
        record_id = record.get("id") if isinstance(record, dict) else None
        return False, _error(record_id, "NO_TEXT", f"line {number} has no text")
    patient = record.get("patient")
    result = scrubber.scrub(text, operator=operator, patient_key=str(patient) if patient is not None else None)
    spans = [{"start": s.start, "end": s.end, "label": str(s.label), "score": round(s.score, 3)} for s in result.spans]
    return True, json.dumps({"id": record.get("id"), "text": result.text, "spans": spans}, ensure_ascii=False)


def _error(record_id: Any, code: str, message: str) -> str:
    return json.dumps({"id": record_id, "error": {"code": code, "message": message}})


def count_lines(path: Path) -> int:
    with path.open(encoding="utf-8") as handle:
        return sum(1 for _ in _numbered(handle))


def _numbered(lines: Iterable[str]) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(lines, start=1):
        if line.strip():
            yield number, line


def register(app: typer.Typer) -> None:
    @app.command("scrub")
    def scrub(
        input_path: Path = typer.Argument(..., help="JSONL: {id, text}; - reads standard input"),
        output: Path | None = typer.Option(None, "-o", "--output", help="JSONL written here (default: stdout)"),
        workers: int = typer.Option(1, "--workers", "-w", min=1, max=64, help="Worker processes"),
        operator: Operator = typer.Option(Operator.redact, help="How PHI is replaced"),
        ner: bool = typer.Option(True, help="Use the spaCy NER layer"),
    ) -> None:
        """De-identify a JSONL file of documents."""
        from tqdm import tqdm

        check_input(input_path)
        total = None if is_stdin(input_path) else count_lines(input_path)
        failed = 0
        with (
            open_text_input(input_path) as source,
            open_text_output(output) as out,
            tqdm(total=total, unit="doc", desc="scrub", disable=None) as bar,
        ):
            lines = _numbered(source)
            if workers == 1:
                _init_worker(operator.value, ner)
                results: Iterable[tuple[bool, str]] = map(_scrub_line, lines)
                for ok, row in results:
                    out.write(row + "\n")
                    failed += not ok
                    bar.update(1)
            else:
                with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(operator.value, ner)) as pool:
                    for ok, row in pool.map(_scrub_line, lines, chunksize=8):
                        out.write(row + "\n")
                        failed += not ok
                        bar.update(1)
        finish(failed)
