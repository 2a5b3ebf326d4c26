"""The facts model: every input shape is normalised into a :class:`PatientRecord` of :class:`Fact` s.

A fact is one thing the record states (a diagnosis, a prescription, a measurement, a visit, a note
sentence). Each fact has a short stable id (``F1``, ``F2`` ...) that summary statements cite, and a
:class:`SourceRef` that says where in the input it came from (a FHIR ``Type/id``, a JSON path such as
``visits[2].labs[0]``, or a note index with a character span).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Any


class FactKind(StrEnum):
    encounter = "encounter"
    condition = "condition"
    medication = "medication"
    observation = "observation"
    procedure = "procedure"
    allergy = "allergy"
    note = "note"


class InputKind(StrEnum):
    patient_model = "patient_model"
    notes = "notes"
    fhir_bundle = "fhir_bundle"
    documents = "documents"


@dataclass(frozen=True, slots=True)
class SourceRef:
    """Where a fact came from: ``path`` is a JSON path or FHIR reference, ``span`` a character range."""

    path: str
    span: tuple[int, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path}
        if self.span is not None:
            out["span"] = list(self.span)
        return out


@dataclass(slots=True)
class Fact:
    id: str
    kind: FactKind
    label: str  # human wording: "Hypertension", "lisinopril 10 MG Oral Tablet", "Hemoglobin A1c"
    source: SourceRef
    date: dt.date | None = None
    end_date: dt.date | None = None
    status: str | None = None  # active / resolved / stopped / completed ...
    code: str | None = None  # "system|code" when known
    concept: str | None = None  # canonical key: "hba1c", "systolic_bp", "diabetes" ...
    category: str | None = None  # vital-signs / laboratory / ambulatory ...
    value: float | None = None
    value_text: str | None = None
    unit: str | None = None
    encounter: str | None = None  # id of the encounter fact this belongs to
    detail: str | None = None  # extra wording (reaction, reason, note text)

    def line(self) -> str:
        """One line for a model prompt: ``[F12] 2021-03-04 observation: Hemoglobin A1c = 7.2 %``."""
        when = self.date.isoformat() if self.date else "undated"
        text = f"[{self.id}] {when} {self.kind.value}: {self.label}"
        if self.value is not None:
            text += f" = {_fmt_number(self.value)}" + (f" {self.unit}" if self.unit else "")
        elif self.value_text:
            text += f" = {self.value_text}"
        if self.status:
            text += f" ({self.status})"
        if self.detail:
            text += f" - {self.detail}"
        return text

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind.value,
            "label": self.label,
            "date": self.date.isoformat() if self.date else None,
            "source": self.source.to_dict(),
        }
        for key in ("status", "code", "concept", "category", "value", "value_text", "unit", "encounter"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.end_date is not None:
            out["end_date"] = self.end_date.isoformat()
        return out


@dataclass(slots=True)
class Demographics:
    name: str | None = None
    birth_date: date | None = None
    gender: str | None = None
    mrn: str | None = None
    patient_id: str | None = None
    address: str | None = None
    deceased: date | None = None


@dataclass(frozen=True, slots=True)
class NoteText:
    """A note's text as given, waiting to be read for the facts it mentions."""

    fact_id: str
    text: str


@dataclass(slots=True)
class PatientRecord:
    """A normalised record: demographics, facts in input order, and what was ignored."""

    kind: InputKind
    demographics: Demographics = field(default_factory=Demographics)
    facts: list[Fact] = field(default_factory=list)
    ignored: Counter[str] = field(default_factory=Counter)  # resource type / field -> count
    resource_counts: Counter[str] = field(default_factory=Counter)
    note_texts: list[NoteText] = field(default_factory=list)  # read by text_facts.read_notes
    _next: int = 0

    def add(self, kind: FactKind, label: str, source: SourceRef, **fields: Any) -> Fact:
        self._next += 1
        fact = Fact(id=f"F{self._next}", kind=kind, label=label, source=source, **fields)
        self.facts.append(fact)
        return fact

    def by_id(self) -> dict[str, Fact]:
        return {f.id: f for f in self.facts}

    def of_kind(self, kind: FactKind) -> list[Fact]:
        return [f for f in self.facts if f.kind is kind]

    def dated(self) -> list[Fact]:
        """Facts in chronological order (undated ones last, input order kept among equals)."""
        return sorted(self.facts, key=lambda f: (f.date is None, f.date or date.min))

    @property
    def first_date(self) -> date | None:
        dates = [f.date for f in self.facts if f.date]
        return min(dates) if dates else None

    @property
    def last_date(self) -> date | None:
        dates = [f.date for f in self.facts if f.date]
        return max(dates) if dates else None

    def stats(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "facts": len(self.facts),
            "facts_by_kind": dict(Counter(f.kind.value for f in self.facts)),
            "resources": dict(self.resource_counts),
            "ignored": dict(self.ignored),
            "ignored_total": sum(self.ignored.values()),
            "first_date": self.first_date.isoformat() if self.first_date else None,
            "last_date": self.last_date.isoformat() if self.last_date else None,
        }


def _fmt_number(value: float) -> str:
    if value == int(value) and abs(value) < 1e12:
        return str(int(value))
    return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.1f}"


fmt_number = _fmt_number
