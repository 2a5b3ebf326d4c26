"""Coded entries of a structured document (C-CDA) joining the rule-found medical data.

A structured document brings its coded entries along (``ExtractedDocument.structured``): they join the
result, and a rule-found item of the same kind over the same words gives way to them. On de-identified
text each is found again by its words, in order; an entry whose words were scrubbed is left out (its
words were an identifier).
"""

from __future__ import annotations

from typing import Any

from .schema import Item, MedicalExtraction


def with_coded_entries(
    result: MedicalExtraction, coded: MedicalExtraction | None, text: str, *, deidentified: bool
) -> MedicalExtraction:
    """``result`` joined by the document's coded entries (re-found in ``text`` when it was de-identified)."""
    if coded is None:
        return result
    if deidentified:
        coded = reground(coded, text)
    return merge_structured(result, coded)


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
