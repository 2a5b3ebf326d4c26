"""Finding dates, numbers, drug names, measurements and diagnoses in free text.

Dates come from :mod:`ai_med_extract.kit.dates` (one set of rules for every layer).

Used twice: to turn free-text notes into facts, and by the grounding check to find the claims a
generated sentence makes. Drug names come from the ``drug-named-entity-recognition`` dictionary (brand
names map to generic names); diagnoses from :mod:`.concepts`.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

from ai_med_extract.kit.dates import DateMention as DateMention  # re-exported for grounding and facts
from ai_med_extract.kit.dates import find_dates as find_dates

from .concepts import ABBREVIATIONS, DIAGNOSIS_SUFFIX, DIAGNOSIS_TERMS, measurement_for

_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:[.,]\d+)?(?![\w])|(?<![\w.])\d+(?:\.\d+)?(?=%|[a-zA-Z])")


def find_numbers(text: str) -> list[tuple[float, int, int]]:
    """Numbers in ``text`` with their spans (``140/90`` gives two numbers)."""
    out = []
    for m in _NUMBER.finditer(text):
        raw = m.group(0).replace(",", "")
        try:
            out.append((float(raw), m.start(), m.end()))
        except ValueError:
            continue
    return out


def strip_spans(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` with the given spans replaced by spaces (keeps other offsets valid)."""
    chars = list(text)
    for s, e in spans:
        for i in range(s, min(e, len(chars))):
            chars[i] = " "
    return "".join(chars)


# --- drugs ----------------------------------------------------------------------------------------

_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9\-]*")
# Words the drug dictionary knows that are ordinary English (or units) in clinical prose.
_NOT_DRUGS = {"today", "cold", "lead", "plan", "iron", "gas", "ice", "air", "salt", "tablet", "oxygen", "water"}


class DrugDictionary:
    """Drug names to generic names; the dictionary (a few MB) is loaded on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._find: Any = None

    def _finder(self) -> Any:
        with self._lock:
            if self._find is None:
                from drug_named_entity_recognition import find_drugs

                self._find = find_drugs
        return self._find

    def find(self, text: str) -> list[tuple[str, int, int]]:
        """``(generic name lower-case, start, end)`` for each drug mentioned in ``text``."""
        tokens = [(m.group(0), m.start(), m.end()) for m in _TOKEN.finditer(text)]
        if not tokens:
            return []
        hits = self._finder()([t for t, _, _ in tokens], is_ignore_case=True)
        out = []
        seen: set[tuple[int, int]] = set()
        for info, first, last in hits:
            if (first, last) in seen:
                continue
            seen.add((first, last))
            words = " ".join(t for t, _, _ in tokens[first:last]).lower()
            if words in _NOT_DRUGS:
                continue
            out.append((str(info.get("name", words)).lower(), tokens[first][1], tokens[last - 1][2]))
        return out

    def generic(self, name: str) -> set[str]:
        """Generic names for a medication label such as ``Glucophage 500 MG Oral Tablet``."""
        found = {g for g, _, _ in self.find(name)}
        if not found:
            first = _TOKEN.search(name)
            if first:
                found.add(first.group(0).lower())
        return found


# --- diagnoses --------------------------------------------------------------------------------------

_TERM_RE = re.compile(r"\b(" + "|".join(re.escape(t) for t in sorted(DIAGNOSIS_TERMS, key=len, reverse=True)) + r")")
_ABBR_RE = re.compile(r"\b(" + "|".join(re.escape(a) for a in ABBREVIATIONS) + r")\b", re.I)
_GENERIC_SUFFIX_WORDS = {"disease", "syndrome", "disorder"}
_NOT_DIAGNOSES = {
    "system", "systems", "criteria", "schema", "oma", "diploma", "aroma", "coma", "stoma", "idiom", "axiom",
    "various disease", "the disease", "kidney disease", "this disease", "of disease", "no disease",
}


def normalise_diagnosis(text: str) -> str:
    """Lower-case, abbreviations expanded, punctuation folded: for comparing diagnosis wording."""
    text = _ABBR_RE.sub(lambda m: ABBREVIATIONS[m.group(1).lower()], text)
    text = re.sub(r"\(.*?\)", " ", text.lower())
    return re.sub(r"[^a-z0-9 ]+", " ", text).strip()


def find_diagnoses(text: str) -> list[tuple[str, int, int]]:
    """Diagnosis mentions: ``(normalised wording, start, end)``."""
    lower = text.lower()
    out: list[tuple[str, int, int]] = []
    taken: list[tuple[int, int]] = []
    for m in _TERM_RE.finditer(lower):
        out.append((m.group(1), m.start(), m.end()))
        taken.append((m.start(), m.end()))
    for m in _ABBR_RE.finditer(text):
        if m.group(1).isupper() or len(m.group(1)) > 3:
            if not any(m.start() < e and s < m.end() for s, e in taken):
                out.append((ABBREVIATIONS[m.group(1).lower()], m.start(), m.end()))
                taken.append((m.start(), m.end()))
    for m in DIAGNOSIS_SUFFIX.finditer(lower):
        word = m.group(0)
        if word in _NOT_DIAGNOSES or word.split()[0] in {"the", "of", "no", "this", "a", "any", "his", "her"}:
            continue
        if any(m.start() < e and s < m.end() for s, e in taken):
            continue
        out.append((word, m.start(), m.end()))
        taken.append((m.start(), m.end()))
    return sorted(out, key=lambda x: x[1])


# --- measurements in prose ---------------------------------------------------------------------------

_BP = re.compile(r"\b(?:bp|blood pressure)\b[^0-9\n]{0,20}(\d{2,3})\s*/\s*(\d{2,3})", re.I)
_MEAS = re.compile(
    r"\b(hba1c|a1c|hemoglobin a1c|glucose|blood glucose|creatinine|egfr|ldl|hdl|cholesterol|triglycerides|"
    r"heart rate|hr|pulse|temperature|temp|weight|bmi|spo2|o2 sat|oxygen saturation|respiratory rate|rr|"
    r"hemoglobin|hgb|potassium|sodium)\b(?:\s+(?:was|is|of|at|=|:|measured|level|value|result))*\s*:?\s*"
    r"(\d+(?:\.\d+)?)\s*(%|mg/dl|mmol/l|kg|lbs?|bpm|/min|°?[cf]\b|ml/min(?:/1\.73\s?m2)?|g/dl)?",
    re.I,
)


@dataclass(frozen=True, slots=True)
class MeasurementMention:
    key: str
    value: float
    unit: str | None
    start: int
    end: int


def find_measurements(text: str) -> list[MeasurementMention]:
    out = []
    for m in _BP.finditer(text):
        out.append(MeasurementMention("systolic_bp", float(m[1]), "mmHg", m.start(), m.end()))
        out.append(MeasurementMention("diastolic_bp", float(m[2]), "mmHg", m.start(), m.end()))
    for m in _MEAS.finditer(text):
        meas = measurement_for(name=m[1])
        if meas is None:
            continue
        out.append(MeasurementMention(meas.key, float(m[2]), m[3] or meas.unit, m.start(), m.end()))
    return out


def sentences(text: str) -> list[tuple[str, int, int]]:
    """Sentences (or lines) of ``text`` with spans; decimal points do not split."""
    out = []
    start = 0
    for m in re.finditer(r"[.!?]+(?=\s|$)|\n+", text):
        end = m.end()
        piece = text[start:end]
        if piece.strip():
            lead = len(piece) - len(piece.lstrip())
            out.append((piece.strip(), start + lead, start + lead + len(piece.strip())))
        start = end
    if text[start:].strip():
        piece = text[start:]
        lead = len(piece) - len(piece.lstrip())
        out.append((piece.strip(), start + lead, start + lead + len(piece.strip())))
    return out
