"""Facts from free text: a note becomes a ``note`` fact, then (once the record is read) the drugs,
diagnoses and measurements it mentions, each citing the note with the character span it rests on.

Reading clinical text is the medical extractor's job, not this agent's: sentence boundaries ("Seen by
Dr. Smith", "p.o. b.i.d." stay whole), negation, hypothetical and family context (medspaCy ConText)
and sections (medspaCy sectionizer) come from a :class:`ClinicalReader` handed to the agent by the
composition root. Mentions the reader marks negated, hypothetical or about someone else, and drugs
named in an allergy section, do not become facts. Without a reader only the notes themselves and
the measurements written in them are facts.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Protocol

from .concepts import BY_KEY, condition_concept
from .facts import Fact, FactKind, NoteText, PatientRecord, SourceRef
from .mentions import DrugDictionary, find_dates, find_measurements, sentences

_drugs = DrugDictionary()


def drug_dictionary() -> DrugDictionary:
    return _drugs


class MentionContext(Protocol):
    @property
    def negated(self) -> bool: ...

    @property
    def hypothetical(self) -> bool: ...

    @property
    def subject(self) -> str: ...


class Mention(Protocol):
    """A problem or drug found in a note: its normalised name, where it is, its clinical context."""

    @property
    def name(self) -> str: ...

    @property
    def text(self) -> str: ...

    @property
    def start(self) -> int: ...

    @property
    def end(self) -> int: ...

    @property
    def section(self) -> str | None: ...

    @property
    def context(self) -> MentionContext: ...


class Reading(Protocol):
    @property
    def problems(self) -> Sequence[Mention]: ...

    @property
    def medications(self) -> Sequence[Mention]: ...


class ClinicalReader(Protocol):
    """What the summary needs from a clinical NLP pipeline (the medical extractor is one)."""

    def extract(self, text: str) -> Reading: ...

    def sentences(self, text: str) -> list[tuple[int, int]]: ...


def add_note(
    record: PatientRecord,
    text: str,
    source: SourceRef,
    *,
    label: str = "Clinical note",
    when: date | None = None,
    encounter: str | None = None,
) -> Fact:
    """Add ``text`` as a note fact; :func:`read_notes` later adds the facts it mentions."""
    if when is None:
        dates = find_dates(text[:400])
        when = next((d.as_date() for d in dates if d.precision == "day"), None)
    note = record.add(FactKind.note, label, source, date=when, encounter=encounter, detail=" ".join(text.split()))
    record.note_texts.append(NoteText(note.id, text))
    return note


def _keeps(mention: Mention) -> bool:
    ctx = mention.context
    return not (ctx.negated or ctx.hypothetical or ctx.subject != "patient")


def read_notes(record: PatientRecord, reader: ClinicalReader | None) -> None:
    """Add the facts the record's notes mention (once; later calls find nothing left to read)."""
    notes = record.by_id()
    pending, record.note_texts = record.note_texts, []
    for item in pending:
        note = notes[item.fact_id]
        _read_note(record, note, item.text, reader)


def _read_note(record: PatientRecord, note: Fact, text: str, reader: ClinicalReader | None) -> None:
    path = note.source.path
    base = note.source.span[0] if note.source.span else 0
    bounds = reader.sentences(text) if reader is not None else [(s, e) for _, s, e in sentences(text)]
    starts = [s for s, _ in bounds]

    def day_at(offset: int) -> date | None:
        at = max(0, _rightmost(starts, offset))
        if bounds:
            s, e = bounds[at]
            found = [d.as_date() for d in find_dates(text[s:e]) if d.precision == "day"]
            if found:
                return found[0]
        return note.date

    def source(start: int, end: int) -> SourceRef:
        return SourceRef(path, (base + start, base + end))

    for s_start, s_end in bounds:
        sentence = text[s_start:s_end]
        for meas in find_measurements(sentence):
            spec = BY_KEY[meas.key]
            record.add(
                FactKind.observation, spec.title, source(s_start + meas.start, s_start + meas.end),
                date=day_at(s_start), concept=meas.key, category=spec.category, value=meas.value, unit=meas.unit,
                encounter=note.encounter,
            )
    if reader is None:
        return
    reading = reader.extract(text)
    for med in reading.medications:
        if not _keeps(med) or med.section == "allergies":
            continue
        at = max(0, _rightmost(starts, med.start))
        sentence = text[bounds[at][0]:bounds[at][1]] if bounds else med.text
        record.add(
            FactKind.medication, med.name, source(med.start, med.end), date=day_at(med.start), status="mentioned",
            encounter=note.encounter, detail=" ".join(sentence.split())[:200],
        )
    for problem in reading.problems:
        if not _keeps(problem):
            continue
        record.add(
            FactKind.condition, problem.text, source(problem.start, problem.end), date=day_at(problem.start),
            status="mentioned", concept=condition_concept(problem.text) or condition_concept(problem.name),
            encounter=note.encounter,
        )


def _rightmost(starts: list[int], offset: int) -> int:
    import bisect

    return bisect.bisect_right(starts, offset) - 1
