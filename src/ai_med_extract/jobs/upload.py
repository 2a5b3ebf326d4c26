"""The upload job: where each uploaded document's text, PHI result and medical result are built.

    extract_text  ->  scrub_phi  ->  extract_medical

``build_upload_pipeline`` puts the three stages in order; each stage is a function below that calls
its agent and returns the ``DocumentResult`` (``jobs/document.py``) extended with its own part:

- ``extract_text``: ``text`` and ``extraction`` (segments with offsets, methods, confidence,
  metadata), from the text agent. Progress after every page or audio chunk, with PHI-free messages
  (``document 1/2: page 3/10 (ocr)``). An encrypted PDF's password comes from the job's secrets
  (``password``), never from stored options. Required: without text there is nothing to deliver.
- ``scrub_phi``: ``phi`` (de-identified text, spans, counts), from the PHI agent. Options (per
  upload): ``scrub`` (default true), ``phi_operator`` (redact | mask | surrogate), ``patient_key``.
  Reversible mode is only offered through the API, which stores the mapping.
- ``extract_medical``: ``medical`` (schema ``MedicalExtraction``, plus its FHIR R4 Bundle), from the
  medical agent, on ``DocumentResult.best_text()`` so that offsets point into the text the stage was
  given (``medical.source`` says which). Option ``extract`` (default true) turns it off. Rules mode:
  no model is involved. A structured document's coded entries join the result
  (``agents/medical/coded.py``). Skipped when ``scrub_phi`` failed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from ai_med_extract.agents.medical.coded import with_coded_entries
from ai_med_extract.agents.medical.extractor import MedicalExtractor
from ai_med_extract.agents.medical.fhir import to_fhir_bundle
from ai_med_extract.agents.phi.agent import PhiAgent
from ai_med_extract.agents.phi.types import Operator, ScrubResult
from ai_med_extract.agents.text.agent import TextExtractionAgent
from ai_med_extract.agents.text.base import Step
from ai_med_extract.jobs.context import StageContext, StoredFile
from ai_med_extract.jobs.document import DocumentResult, MedicalResult
from ai_med_extract.jobs.pipeline import DocumentPipeline, Stage, StageFn


def build_upload_pipeline(
    text: TextExtractionAgent, phi: PhiAgent | None = None, medical: MedicalExtractor | None = None
) -> DocumentPipeline:
    """The ``upload`` job handler: text extraction, then PHI scrubbing and medical extraction when
    this deployment has those agents."""
    stages: list[Stage] = []
    stages.append(Stage("extract_text", text_extraction_stage(text, stage_count=lambda: len(stages)), required=True))
    if phi is not None:
        stages.append(Stage("scrub_phi", scrub_phi_stage(phi)))
    if medical is not None:
        stages.append(Stage("extract_medical", extract_medical_stage(medical), needs=("scrub_phi",)))
    return DocumentPipeline(stages)


def text_extraction_stage(
    agent: TextExtractionAgent, *, stage_count: Callable[[], int] = lambda: 1, name: str = "extract_text"
) -> StageFn:
    """``stage_count`` gives the pipeline's number of stages, so page progress fits the job's scale."""

    async def extract_text(ctx: StageContext, file: StoredFile, doc: DocumentResult) -> DocumentResult:
        files = list(ctx.files or [file])
        index = next((i for i, f in enumerate(files) if f is file), 0)
        stages = max(1, stage_count())
        span = 100.0 / (len(files) * stages)
        base = index * stages * span

        async def on_step(step: Step) -> None:
            detail = f" ({step.detail})" if step.detail else ""
            await ctx.progress(
                name,
                base + span * step.done / max(1, step.total),
                f"document {index + 1}/{len(files)}: {step.unit} {step.done}/{step.total}{detail}",
            )

        data = await ctx.run_blocking(file.read_bytes)
        result = await agent.extract(
            data,
            password=ctx.secrets.get("password"),
            run=ctx.run_blocking,
            on_step=on_step,
            check_cancelled=ctx.check_cancelled,
        )
        return dataclasses.replace(doc, media_type=result.metadata.media_type, text=result.text, extraction=result)

    return extract_text


def scrub_phi_stage(agent: PhiAgent) -> StageFn:
    async def scrub_phi(ctx: StageContext, file: StoredFile, doc: DocumentResult) -> DocumentResult:
        options = ctx.options_for(file)
        text = doc.text
        if not options.get("scrub", True) or not text:
            return doc
        operator = Operator(options.get("phi_operator") or Operator.redact)
        if operator is Operator.reversible:
            operator = Operator.redact
        result: ScrubResult = await ctx.run_blocking(
            lambda: agent.scrub(text, operator=operator, patient_key=options.get("patient_key"))
        )
        return dataclasses.replace(doc, phi=result)

    return scrub_phi


def extract_medical_stage(agent: MedicalExtractor) -> StageFn:
    async def extract_medical(ctx: StageContext, file: StoredFile, doc: DocumentResult) -> DocumentResult:
        if not ctx.options_for(file).get("extract", True):
            return doc
        text = doc.best_text()
        if not text:
            return doc
        result = await ctx.run_blocking(agent.extract, text)
        coded = doc.extraction.structured if doc.extraction is not None else None
        result = with_coded_entries(result, coded, text, deidentified=doc.phi is not None)
        bundle = await ctx.run_blocking(to_fhir_bundle, result, seed=file.document_id)
        return dataclasses.replace(
            doc, medical=MedicalResult(source=doc.best_text_source, extraction=result, fhir=bundle)
        )

    return extract_medical
