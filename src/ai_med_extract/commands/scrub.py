"""`ai-med-extract scrub INPUT.jsonl -o OUTPUT.jsonl [--workers N]`.

Each input line is ``{"id": ..., "text": ...}`` (optionally ``"patient": ...``); each output line is
``{"id", "text": <scrubbed>, "spans": [{"start", "end", "label", "score"}]}`` with offsets into the
input text. Lines keep their input order. ``--workers`` runs that many processes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import typer

_scrubber: Any = None


def _init_worker(operator: str, ner: bool) -> None:
    global _scrubber
    from ai_med_extract.agents.phi.scrubber import PhiScrubber

    _scrubber = (PhiScrubber.default(ner=ner), operator)


def _scrub_line(line: str) -> str:
    scrubber, operator = _scrubber
    record = json.loads(line)
    text = record.get("text") or ""
    patient = record.get("patient")
    result = scrubber.scrub(text, operator=operator, patient_key=str(patient) if patient is not None else None)
    spans = [{"start": s.start, "end": s.end, "label": str(s.label), "score": round(s.score, 3)} for s in result.spans]
    return json.dumps({"id": record.get("id"), "text": result.text, "spans": spans}, ensure_ascii=False)


def _lines(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield line


def register(app: typer.Typer) -> None:
    @app.command("scrub")
    def scrub(
        input_path: Path = typer.Argument(..., exists=True, dir_okay=False, help="JSONL: {id, text}"),
        output: Path = typer.Option(..., "-o", "--output", help="JSONL written here"),
        workers: int = typer.Option(1, "--workers", "-w", min=1, max=64, help="Worker processes"),
        operator: str = typer.Option("redact", help="redact | mask | surrogate"),
        ner: bool = typer.Option(True, help="Use the spaCy NER layer"),
    ) -> None:
        """De-identify a JSONL file of documents."""
        from tqdm import tqdm

        if operator not in ("redact", "mask", "surrogate"):
            raise typer.BadParameter("operator must be redact, mask or surrogate")
        total = sum(1 for _ in _lines(input_path))
        with output.open("w", encoding="utf-8") as out, tqdm(total=total, unit="doc", desc="scrub") as bar:
            if workers == 1:
                _init_worker(operator, ner)
                for line in _lines(input_path):
                    out.write(_scrub_line(line) + "\n")
                    bar.update(1)
            else:
                with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(operator, ner)) as pool:
                    for result in pool.map(_scrub_line, _lines(input_path), chunksize=8):
                        out.write(result + "\n")
                        bar.update(1)
