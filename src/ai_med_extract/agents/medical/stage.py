"""The upload pipeline's ``extract_medical`` stage."""

from __future__ import annotations

from typing import Any

from .extractor import MedicalExtractor
from .fhir import to_fhir_bundle


def extract_medical_stage(agent: MedicalExtractor):  # type: ignore[no-untyped-def]
    """Adds ``medical`` (the extraction, schema ``MedicalExtraction``) to the document.

    Reads the de-identified text when ``scrub_phi`` produced one, else the extracted text, so offsets
    point into the text the stage was given (``medical.source`` says which). The upload option
    ``extract`` (default true; ``medical`` is accepted too) turns the stage off per upload. Rules mode:
    no model is involved.
    """

    async def stage(ctx: Any, file: Any, doc: dict[str, Any]) -> dict[str, Any]:
        options = {**(getattr(ctx, "options", None) or {}), **(getattr(file, "options", None) or {})}
        if not options.get("extract", True):
            return doc
        scrubbed = (doc.get("phi") or {}).get("text")
        text = scrubbed if scrubbed is not None else doc.get("text")
        if not text:
            return doc
        result = await ctx.run_blocking(agent.extract, text)
        bundle = await ctx.run_blocking(to_fhir_bundle, result, seed=file.document_id)
        return {
            **doc,
            "medical": {
                "source": "phi.text" if scrubbed is not None else "text",
                "counts": result.counts(),
                **result.model_dump(mode="json"),
                "fhir": bundle,
            },
        }

    return stage
