"""Facts from free text: a note becomes a ``note`` fact plus the drugs, measurements and diagnoses it
mentions (each citing the note with the character span it rests on). Negated mentions ("denies chest
pain", "no diabetes") are not turned into facts.
"""

from __future__ import annotations

import re
from datetime import date

from .concepts import BY_KEY, condition_concept
from .facts import FactKind, PatientRecord, SourceRef
from .lexicon import DrugDictionary, find_dates, find_diagnoses, find_measurements, sentences

_NEGATION = re.compile(
    r"\b(no|not|denies|denied|without|negative for|ruled out|rules out|free of|absence of|never)\b[^.;]{0,40}$",
    re.I,
)

_drugs = DrugDictionary()


def drug_dictionary() -> DrugDictionary:
    return _drugs


def _negated(sentence_text: str, offset_in_sentence: int) -> bool:
    return bool(_NEGATION.search(sentence_text[:offset_in_sentence]))


def add_note(
    record: PatientRecord,
    text: str,
    source: SourceRef,
    *,
    label: str = "Clinical note",
    when: date | None = None,
    encounter: str | None = None,
) -> None:
    """Add ``text`` as a note fact and the facts it mentions."""
    if when is None:
        dates = find_dates(text[:400])
        when = next((d.as_date() for d in dates if d.precision == "day"), None)
    note = record.add(FactKind.note, label, source, date=when, encounter=encounter, detail=" ".join(text.split()))
    path = source.path
    base = source.span[0] if source.span else 0
    for sentence, s_start, _s_end in sentences(text):
        sentence_dates = [d.as_date() for d in find_dates(sentence) if d.precision == "day"]
        day = sentence_dates[0] if sentence_dates else when
        for generic, start, end in _drugs.find(sentence):
            if _negated(sentence, start):
                continue
            record.add(
                FactKind.medication, generic, SourceRef(path, (base + s_start + start, base + s_start + end)),
                date=day, status="mentioned", encounter=encounter or note.encounter, detail=sentence[:200],
            )
        for meas in find_measurements(sentence):
            spec = BY_KEY[meas.key]
            record.add(
                FactKind.observation, spec.title, SourceRef(path, (base + s_start + meas.start, base + s_start + meas.end)),
                date=day, concept=meas.key, category=spec.category, value=meas.value, unit=meas.unit,
                encounter=encounter,
            )
        for wording, start, end in find_diagnoses(sentence):
            if _negated(sentence, start):
                continue
            record.add(
                FactKind.condition, wording, SourceRef(path, (base + s_start + start, base + s_start + end)),
                date=day, status="mentioned", concept=condition_concept(wording), encounter=encounter,
            )
