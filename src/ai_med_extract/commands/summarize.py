"""`ai-med-extract summarize RECORD.json [--model NAME] [--json] [--deidentify] [--stream]`.

RECORD.json holds any accepted record shape (a FHIR Bundle, the patient data model, a list of notes,
``{"documents": [...]}``). Prints the Markdown summary (or the full JSON with ``--json``). ``--model
template`` uses the deterministic summariser without loading a model.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import typer


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
        record_path: Path = typer.Argument(..., exists=True, dir_okay=False, help="Patient record JSON"),
        model: str | None = typer.Option(None, "--model", "-m", help="Model name, or 'template' for no model"),
        as_json: bool = typer.Option(False, "--json", help="Print the structured JSON instead of Markdown"),
        deidentify: bool = typer.Option(False, help="Leave identifiers out of the overview"),
        stream: bool = typer.Option(False, help="Echo generated tokens to stderr while writing"),
        grounding: str | None = typer.Option(None, help="remove | flag unsupported statements"),
    ) -> None:
        """Summarise a patient record (FHIR Bundle, patient data model, notes or processed documents)."""
        from ai_med_extract.errors import AppError

        if grounding not in (None, "remove", "flag"):
            raise typer.BadParameter("grounding must be remove or flag")
        try:
            record = json.loads(record_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            typer.echo("error: the file is not valid JSON", err=True)
            raise typer.Exit(2) from None
        try:
            summary = asyncio.run(_run(record, model, deidentify, stream, grounding))
        except AppError as exc:
            typer.echo(json.dumps(exc.to_dict(), indent=2), err=True)
            raise typer.Exit(1) from None
        if stream:
            sys.stderr.write("\n")
        if as_json:
            typer.echo(summary.model_dump_json(indent=2))
        else:
            typer.echo(summary.markdown, nl=False)
            g = summary.grounding
            typer.echo(
                f"\n<!-- generator={summary.generation.generator} model={summary.generation.model} "
                f"chunks={summary.generation.chunks} grounding: {g.supported}/{g.checked} supported, "
                f"{g.removed} removed, {g.flagged} flagged; {summary.duration_s} s -->"
            )
