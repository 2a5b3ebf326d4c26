"""The upload pipeline's ``extract_medical`` stage."""

from __future__ import annotations

from typing import Any

from .extractor import MedicalExtractor
from .fhir import to_fhir_bundle
from .schema import Item, MedicalExtraction


def extract_medical_stage(agent: MedicalExtractor):  # type: ignore[no-untyped-def]
    """Adds ``medical`` (the extraction, schema ``MedicalExtraction``) to the document.

    Reads the de-identified text when ``scrub_phi`` produced one, else the extracted text, so offsets
    point into the text the stage was given (``medical.source`` says which). The upload option
    ``extract`` (default true; ``medical`` is accepted too) turns the stage off per upload. Rules mode:
    no model is involved.

    A structured document (C-CDA) brings its coded entries along (``extraction.structured``): they
    join the result, and a rule-found item of the same kind over the same words gives way to them.
    On de-identified text each is found again by its words, in order; an entry whose words were
    scrubbed is left out (its words were an identifier).
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
        structured = (doc.get("extraction") or {}).get("structured")
        if structured:
            coded = MedicalExtraction.model_validate(structured)
            if scrubbed is not None:
                coded = reground(coded, text)
            result = merge_structured(result, coded)
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


_LISTS = ("problems", "medications", "procedures", "labs", "vitals", "allergies")


def reground(extraction: MedicalExtraction, text: str) -> MedicalExtraction:
    """The same items with offsets into ``text`` (a de-identified copy): each found by its words,
    searching on from the previous one; items not found are left out."""
    out = extraction.model_copy(update={name: [] for name in _LISTS} | {"text_length": len(text)})
    located: list[tuple[str, Item]] = []
    cursor = 0
    everything = [(name, item) for name in _LISTS for item in getattr(extraction, name)]
    for name, item in sorted(everything, key=lambda pair: pair[1].start):
        at = text.find(item.text, cursor)
        if at < 0:
            continue
        located.append((name, item.model_copy(update={"start": at, "end": at + len(item.text)})))
        cursor = at
    for name, item in located:
        getattr(out, name).append(item)
    return out


def merge_structured(result: MedicalExtraction, coded: MedicalExtraction) -> MedicalExtraction:
    """Rule items plus coded entries; a rule item overlapping a coded one of its kind is dropped."""
    update: dict[str, Any] = {}
    for name in _LISTS:
        entries = getattr(coded, name)
        kept = [
            item for item in getattr(result, name)
            if not any(item.start < e.end and e.start < item.end for e in entries)
        ]  # fmt: skip
        merged = sorted([*kept, *entries], key=lambda item: (item.start, item.end))
        kind = name[:-1] if name != "allergies" else "allergy"
        update[name] = [item.model_copy(update={"id": f"{kind}-{n}"}) for n, item in enumerate(merged, start=1)]
    return result.model_copy(update=update)
