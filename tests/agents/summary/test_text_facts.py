"""Facts from free-text notes are read with the medical extractor (its sentence splitter, medspaCy
ConText and sectionizer), not with regular expressions of the summary's own."""

from __future__ import annotations

from ai_med_extract.agents.medical.extractor import MedicalExtractor
from ai_med_extract.agents.summary import PatientSummaryAgent
from ai_med_extract.agents.summary.facts import FactKind, PatientRecord
from ai_med_extract.agents.summary.inputs import load_record
from ai_med_extract.agents.summary.text_facts import read_notes


def _read(notes: list[str], reader: MedicalExtractor) -> PatientRecord:
    record = load_record(notes)
    read_notes(record, reader)
    return record


def _labels(record: PatientRecord, kind: FactKind) -> list[str]:
    return [f.label.lower() for f in record.of_kind(kind)]


def test_a_negated_symptom_does_not_negate_the_diagnosis_and_drug_after_but(reader: MedicalExtractor) -> None:
    record = _read(["No fever but known diabetes on metformin."], reader)

    assert any("diabetes" in label for label in _labels(record, FactKind.condition))
    assert "metformin" in _labels(record, FactKind.medication)
    assert not any("fever" in label for label in _labels(record, FactKind.condition))


def test_a_negated_diagnosis_and_a_family_history_are_not_the_patients_problems(reader: MedicalExtractor) -> None:
    record = _read(["Denies diabetes. Family history: mother had hypertension.\nAllergies: penicillin."], reader)

    assert _labels(record, FactKind.condition) == []
    assert "penicillin" not in _labels(record, FactKind.medication)  # an allergen, not a drug taken


def test_doctor_titles_and_latin_dosing_abbreviations_do_not_end_a_sentence(reader: MedicalExtractor) -> None:
    text = "Seen by Dr. Smith for diabetes follow-up. Continue metformin 500 mg p.o. b.i.d. with meals."
    record = _read([text], reader)

    spans = reader.sentences(text)
    assert [text[s:e] for s, e in spans] == [
        "Seen by Dr. Smith for diabetes follow-up.",
        "Continue metformin 500 mg p.o. b.i.d. with meals.",
    ]
    metformin = next(f for f in record.of_kind(FactKind.medication) if f.label == "metformin")
    assert metformin.detail == "Continue metformin 500 mg p.o. b.i.d. with meals."
    start, end = metformin.source.span or (0, 0)
    assert text[start:end] == "metformin 500 mg p.o. b.i.d."  # the citation spans the drug and its dosing


async def test_the_summary_of_notes_lists_the_drug_the_extractor_found(reader: MedicalExtractor) -> None:
    agent = PatientSummaryAgent(None, reader=reader)
    summary = await agent.summarize(["2022-05-01 No fever but known diabetes on metformin 500 mg p.o. b.i.d."])

    medications = " ".join(s.text for s in summary.sections["medications"].statements).lower()
    problems = " ".join(s.text for s in summary.sections["active_problems"].statements).lower()
    assert "metformin" in medications and "diabetes" in problems
