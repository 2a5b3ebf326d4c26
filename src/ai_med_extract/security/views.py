"""The de-identified view of stored results: what a caller without identified access may read.

An upload document keeps its de-identified text (``phi.text``), its structure (segments and offsets,
metadata, PHI span labels) and its structured medical data when that was read from the de-identified
text (its offsets then index ``phi.text``); the extracted text (``text``), which holds the names and
identifiers, is left out, and so is whatever indexes it. A summary keeps only what was generated with ``deidentify``;
SOAP notes and identified summaries are withheld whole, and so are their streamed tokens.
"""

from __future__ import annotations

from typing import Any

WITHHELD = "IDENTIFIED_DATA_WITHHELD"


def summary_is_deidentified(kind: str, options: dict[str, Any] | None) -> bool:
    """True when a job's generated text was made without identifiers."""
    if kind != "summary":
        return True
    options = options or {}
    return options.get("task", "summary") == "summary" and bool((options.get("summary") or {}).get("deidentify"))


def deidentified_document(doc: dict[str, Any]) -> dict[str, Any]:
    """The document without its extracted text. What stays points into what stays: medical findings
    (and their bundle) carry offsets and words of the text extraction read, so they are kept when that
    was the de-identified copy (``medical.source == "phi.text"``) and withheld, counts aside, when it
    was the identified text; the structured entries of a C-CDA (offsets into the identified text,
    carried again, re-grounded, in ``medical``) are left out of ``extraction``."""
    out = {key: value for key, value in doc.items() if key != "text"}
    medical = out.get("medical")
    if isinstance(medical, dict) and medical.get("source") != "phi.text":
        out["medical"] = {"withheld": WITHHELD, "source": medical.get("source"), "counts": medical.get("counts")}
    extraction = out.get("extraction")
    if isinstance(extraction, dict) and "structured" in extraction:
        out["extraction"] = {key: value for key, value in extraction.items() if key != "structured"}
    return out


def deidentified_result(kind: str, options: dict[str, Any] | None, result: dict[str, Any] | None) -> dict[str, Any] | None:
    """The result as a caller with the de-identified view may see it."""
    if result is None:
        return None
    if kind != "summary":
        out = dict(result)
        if isinstance(out.get("documents"), list):
            out["documents"] = [deidentified_document(d) if isinstance(d, dict) else d for d in out["documents"]]
        return out
    if summary_is_deidentified(kind, options):
        return result
    return {"withheld": WITHHELD}


def event_is_visible(kind: str, options: dict[str, Any] | None, event: str) -> bool:
    """Whether a job event may go to a caller with the de-identified view (tokens carry generated text)."""
    return event != "token" or summary_is_deidentified(kind, options)
