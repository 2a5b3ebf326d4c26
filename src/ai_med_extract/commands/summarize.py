"""`ai-med-extract summarize RECORD.json [-o OUT] [--model NAME] [--json] [--deidentify] [--stream]`.

RECORD.json holds any accepted record shape (a FHIR Bundle, the patient data model, a list of notes,
``{"documents": [...]}``). Prints the Markdown summary (or the full JSON with ``--json``). ``--model
template`` uses the deterministic summariser without loading a model. ``-`` reads the record from
standard input; without ``-o`` the summary goes to standard output. A record that cannot be read or
summarised gives the status 1 (commands/conventions.py).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import typer

from ai_med_extract.commands.conventions import (
    Grounding,
    check_input,
    finish,
    open_text_input,
    open_text_output,
)


async def _run(record: Any, model: str | None, deidentify: bool, stream: bool, grounding: str | None) -> Any:
    from ai_med_extract.agents.summary import TEMPLATE_MODEL, PatientSummaryAgent, SummaryOptions
    from ai_med_extract.config import Settings

    settings = Settings()
    pool = None
    if model != TEMPLATE_MODEL:
        from ai_med_extract.inference.pool import ModelPool

        pool = ModelPool.from_settings(settings)
    from ai_med_extract.agents.medical.extractor import MedicalExtractor

    agent = PatientSummaryAgent(pool, settings.summary, reader=MedicalExtractor())

    async def echo(section: str, text: str) -> None:
        sys.stderr.write(text)
        sys.stderr.flush()

    try:
        return await agent.summarize(
            record,
            SummaryOptions(model=model, deidentify=deidentify, grounding=grounding),  # type: ignore[arg-type]
            on_token=echo if stream else None,
        )
    finally:
        if pool is not None:
            await pool.close()


def register(app: typer.Typer) -> None:
    @app.command("summarize")
    def summarize(
        record_path: Path = typer.Argument(..., help="Patient record JSON; - reads standard input"),
        output: Path | None = typer.Option(None, "-o", "--output", help="Write the summary here (default: stdout)"),
        model: str | None = typer.Option(None, "--model", "-m", help="Model name, or 'template' for no model"),
        as_json: bool = typer.Option(False, "--json", help="Print the structured JSON instead of Markdown"),
        deidentify: bool = typer.Option(False, help="Leave identifiers out of the overview"),
        stream: bool = typer.Option(False, help="Echo generated tokens to stderr while writing"),
        grounding: Grounding | None = typer.Option(None, help="What to do with unsupported statements"),
    ) -> None:
        """Summarise a patient record (FHIR Bundle, patient data model, notes or processed documents)."""
        from ai_med_extract.errors import AppError

        check_input(record_path)
        try:
            with open_text_input(record_path) as source:
                record = json.loads(source.read())
        except (json.JSONDecodeError, UnicodeDecodeError):
            typer.echo("error: the record is not valid JSON", err=True)
            finish(1)
        try:
            summary = asyncio.run(_run(record, model, deidentify, stream, grounding.value if grounding else None))
        except AppError as exc:
            typer.echo(json.dumps(exc.to_dict(), indent=2), err=True)
            finish(1)
        if stream:
            sys.stderr.write("\n")
        with open_text_output(output) as out:
            if as_json:
                out.write(summary.model_dump_json(indent=2) + "\n")
            else:
                g = summary.grounding
                out.write(
                    summary.markdown
                    + f"\n<!-- generator={summary.generation.generator} model={summary.generation.model} "
                    f"chunks={summary.generation.chunks} grounding: {g.supported}/{g.checked} supported, "
                    f"{g.removed} removed, {g.flagged} flagged; {summary.duration_s} s -->\n"
                )
        finish(0)
