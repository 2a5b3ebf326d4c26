"""`ai-med-extract extract INPUT.jsonl [-o OUTPUT.jsonl] [--fhir] [--ndjson DIR] [--mode rules|llm]`.

Each input line is ``{"id": ..., "text": ...}``; each output line is ``{"id", "medical": <extraction>}``
(plus ``"fhir"``: a FHIR R4 (4.0.1) Bundle validated against R4, with ``--fhir``). Offsets index the
input text. A line that is not JSON or has no text gives ``{"id", "error": {"code", "message"}}`` and
the run goes on. ``--ndjson DIR`` also exports every resource FHIR Bulk Data style: one
``<ResourceType>.ndjson`` file per type in DIR, one resource per line.
The LLM mode loads the model catalogue (``AME_MODELS__CONFIG_PATH``) and runs through the model pool.
``-`` reads standard input; without ``-o`` the lines go to standard output; the exit status is 1 when
any line failed (commands/conventions.py).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import typer

from ai_med_extract.commands.conventions import (
    ExtractionMode,
    check_input,
    finish,
    is_stdin,
    open_text_input,
    open_text_output,
)


def _lines(lines: Iterable[str]) -> Iterator[str]:
    for line in lines:
        if line.strip():
            yield line


def _count(path: Path) -> int:
    with path.open(encoding="utf-8") as handle:
        return sum(1 for _ in _lines(handle))


def _error(record_id: Any, code: str, message: str) -> str:
    return json.dumps({"id": record_id, "error": {"code": code, "message": message}})


def _write_ndjson(directory: Path, bundles: list[dict[str, Any]]) -> None:
    from ai_med_extract.agents.medical.fhir import to_ndjson

    directory.mkdir(parents=True, exist_ok=True)
    for resource_type, lines in sorted(to_ndjson(bundles).items()):
        (directory / f"{resource_type}.ndjson").write_text("".join(f"{line}\n" for line in lines), "utf-8")


async def _run(
    input_path: Path,
    output: Path | None,
    *,
    mode: str,
    fhir: bool,
    model: str | None,
    ndjson: Path | None = None,
) -> tuple[int, int]:
    from tqdm import tqdm

    from ai_med_extract.agents.medical.extractor import MedicalExtractor
    from ai_med_extract.agents.medical.fhir import to_fhir_bundle
    from ai_med_extract.errors import AppError

    pool = None
    llm = None
    if mode == "llm":
        from ai_med_extract.agents.medical.llm import LLMCandidateSource
        from ai_med_extract.config import Settings
        from ai_med_extract.inference.pool import ModelPool

        pool = ModelPool.from_settings(Settings())
        llm = LLMCandidateSource(pool)
    extractor = MedicalExtractor(llm=llm)
    done = failed = 0
    bundles: list[dict[str, Any]] = []
    total = None if is_stdin(input_path) else _count(input_path)
    try:
        with (
            open_text_input(input_path) as source,
            open_text_output(output) as out,
            tqdm(total=total, unit="doc", desc="extract", disable=None) as bar,
        ):
            for number, line in enumerate(_lines(source), start=1):
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    out.write(_error(None, "INVALID_JSON", f"line {number} is not JSON") + "\n")
                    failed += 1
                    bar.update(1)
                    continue
                record_id = record.get("id") if isinstance(record, dict) else None
                text = record.get("text") if isinstance(record, dict) else None
                if not isinstance(text, str):
                    out.write(_error(record_id, "NO_TEXT", f"line {number} has no text") + "\n")
                    failed += 1
                    bar.update(1)
                    continue
                try:
                    result = await extractor.aextract(text, mode=mode, model=model)  # type: ignore[arg-type]
                except AppError as exc:
                    out.write(_error(record_id, exc.code, exc.message) + "\n")
                    failed += 1
                    bar.update(1)
                    continue
                row: dict[str, Any] = {"id": record_id, "medical": result.model_dump(mode="json")}
                if fhir or ndjson is not None:
                    bundle = to_fhir_bundle(result, seed=str(record_id if record_id is not None else number))
                    if fhir:
                        row["fhir"] = bundle
                    if ndjson is not None:
                        bundles.append(bundle)
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
                done += 1
                bar.update(1)
        if ndjson is not None:
            _write_ndjson(ndjson, bundles)
    finally:
        if pool is not None:
            await pool.close()
    return done, failed


def register(app: typer.Typer) -> None:
    @app.command("extract")
    def extract(
        input_path: Path = typer.Argument(..., help="JSONL: {id, text}; - reads standard input"),
        output: Path | None = typer.Option(None, "-o", "--output", help="JSONL written here (default: stdout)"),
        mode: ExtractionMode = typer.Option(
            ExtractionMode.rules, help="rules: no model; llm: model-assisted, through the pool"
        ),
        fhir: bool = typer.Option(False, "--fhir/--no-fhir", help="Add a validated FHIR R4 Bundle per line"),
        ndjson: Path | None = typer.Option(
            None,
            "--ndjson",
            file_okay=False,
            help="Also export the FHIR R4 resources to DIR/<ResourceType>.ndjson (Bulk Data style)",
        ),
        model: str | None = typer.Option(None, help="LLM mode: a model name from the catalogue"),
    ) -> None:
        """Extract problems, medications, procedures, labs, vitals and allergies from a JSONL file."""
        check_input(input_path)
        done, failed = asyncio.run(
            _run(input_path, output, mode=mode.value, fhir=fhir, model=model, ndjson=ndjson)
        )
        typer.echo(f"{done} extracted, {failed} failed", err=True)
        finish(failed)
