"""Rules mode: every entity type and attribute, context, sections, grounding, codes, limits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import simple_icd_10_cm as icd

from ai_med_extract.agents.medical.extractor import ExtractorLimits, MedicalExtractor
from ai_med_extract.agents.medical.schema import MedicalExtraction
from ai_med_extract.agents.medical.vocabulary import DRUGBANK, ICD10CM, LOINC, load_vocabulary
from ai_med_extract.errors import PayloadTooLarge

EVAL_SET = Path(__file__).resolve().parents[3] / "bench" / "data" / "medical_eval.jsonl"

NOTE = """CHIEF COMPLAINT: chest pain
HPI: 67 yo M with h/o CABG presents with chest pain. Denies fever or cough. Possible pneumonia.
PAST MEDICAL HISTORY: hypertension, type 2 diabetes
FAMILY HISTORY: Mother with breast cancer.
MEDICATIONS:
Metformin 500 mg PO BID
Lipitor 40 mg at bedtime
Albuterol 2 puffs inh q4-6h prn wheezing
Stopped warfarin.
ALLERGIES: Penicillin (hives), shellfish - severe anaphylaxis
VITALS: BP 142/88, HR 96, RR 18, Temp 100.4 F, SpO2 94% on RA, Wt 180 lbs, Ht 5'10", BMI 27.4
LABS 03/04/2024: Na 131 (L), K 5.6 mmol/L (H), Cr 1.4 (0.6-1.2), HbA1c 8.2%
PLAN: EKG and echocardiogram.
"""


@pytest.fixture(scope="module")
def result(extractor: MedicalExtractor) -> MedicalExtraction:
    return extractor.extract(NOTE)


def by_name(items: list, name: str):  # noqa: ANN001, ANN201
    found = [i for i in items if getattr(i, "name", None) == name]
    assert found, f"{name} not found in {[getattr(i, 'name', None) for i in items]}"
    return found[0]


def test_every_item_points_at_its_words_in_the_source(result: MedicalExtraction) -> None:
    assert result.items()
    for item in result.items():
        assert NOTE[item.start : item.end] == item.text
        assert item.detector


def test_offsets_match_the_source_on_every_evaluation_note(extractor: MedicalExtractor) -> None:
    notes = [json.loads(line) for line in EVAL_SET.read_text().splitlines()]
    for note in notes:
        for item in extractor.extract(note["text"]).items():
            assert note["text"][item.start : item.end] == item.text, (note["id"], item.id)


def test_problems_carry_icd10cm_codes_from_the_shipped_release(result: MedicalExtraction) -> None:
    hypertension = by_name(result.problems, "hypertension")
    assert [(c.system, c.code) for c in hypertension.codes] == [(ICD10CM, "I10")]
    assert hypertension.codes[0].display == icd.get_description("I10")
    for problem in result.problems:
        for code in problem.codes:
            assert icd.is_valid_item(code.code)


def test_every_curated_problem_code_exists_in_icd10cm() -> None:
    vocab = load_vocabulary(icd_lexicon=False)
    assert all(icd.is_valid_item(t.code) for t in vocab.problems if t.code)


def test_medication_attributes_are_normalised(result: MedicalExtraction) -> None:
    metformin = by_name(result.medications, "metformin")
    assert (metformin.strength, metformin.dose, metformin.unit) == ("500 mg", 500, "mg")
    assert (metformin.route, metformin.frequency, metformin.status) == ("oral", "BID", "active")
    # the ingredient's DrugBank id, not the dictionary's MeSH class (D007004 "Hypoglycemic Agents")
    assert [(c.system, c.code, c.display) for c in metformin.codes] == [(DRUGBANK, "DB00331", "Metformin")]
    atorvastatin = by_name(result.medications, "atorvastatin")  # the brand name Lipitor
    assert atorvastatin.text.startswith("Lipitor") and atorvastatin.frequency == "QHS"
    albuterol = by_name(result.medications, "albuterol")
    assert (albuterol.dose, albuterol.unit, albuterol.frequency) == (2, "puff", "Q4-6H")
    assert albuterol.prn and albuterol.prn_reason == "wheezing" and albuterol.route == "inhalation"
    assert by_name(result.medications, "warfarin").status == "stopped"


def test_medication_duration_and_status_cues(extractor: MedicalExtractor) -> None:
    out = extractor.extract(
        "Start amoxicillin 500 mg PO TID x 10 days. Hold lisinopril. Patient not taking aspirin."
    )
    amoxicillin = by_name(out.medications, "amoxicillin")
    assert amoxicillin.duration == "10 day" and amoxicillin.status == "intended"
    assert by_name(out.medications, "lisinopril").status == "on-hold"
    aspirin = by_name(out.medications, "aspirin")
    assert aspirin.context.negated and aspirin.status == "not-taken"


def test_negation_and_uncertainty(result: MedicalExtraction) -> None:
    assert by_name(result.problems, "fever").context.negated
    assert by_name(result.problems, "cough").context.negated
    assert not by_name(result.problems, "hypertension").context.negated
    pneumonia = by_name(result.problems, "pneumonia")
    assert pneumonia.context.uncertain and not pneumonia.context.negated


def test_family_history_is_about_someone_else(result: MedicalExtraction, extractor: MedicalExtractor) -> None:
    assert by_name(result.problems, "breast cancer").context.subject == "family"
    assert by_name(result.problems, "hypertension").context.subject == "patient"
    out = extractor.extract("His father had a myocardial infarction at 50. He has asthma.")
    assert by_name(out.problems, "myocardial infarction").context.subject == "family"
    assert by_name(out.problems, "asthma").context.subject == "patient"


def test_historical_procedure(result: MedicalExtraction) -> None:
    cabg = by_name(result.procedures, "coronary artery bypass graft")
    assert cabg.context.historical


def test_sections_are_detected_and_items_know_theirs(result: MedicalExtraction) -> None:
    categories = [s.category for s in result.sections]
    for expected in ("chief_complaint", "hpi", "past_medical_history", "family_history", "medications",
                     "allergies", "vitals", "labs", "assessment_and_plan"):
        assert expected in categories
    assert by_name(result.medications, "metformin").section == "medications"
    assert by_name(result.problems, "hypertension").section == "past_medical_history"
    for section in result.sections:
        assert NOTE[section.start :].startswith(section.title)


def test_vitals_are_normalised_to_ucum(result: MedicalExtraction) -> None:
    vitals = {v.kind: v for v in result.vitals}
    assert set(vitals) == {"blood_pressure", "heart_rate", "respiratory_rate", "temperature", "spo2",
                           "weight", "height", "bmi"}
    assert (vitals["blood_pressure"].value, vitals["blood_pressure"].diastolic) == (142, 88)
    assert vitals["blood_pressure"].unit == "mm[Hg]"
    assert (vitals["temperature"].value, vitals["temperature"].unit) == (38.0, "Cel")
    assert vitals["temperature"].original_value == "100.4" and vitals["temperature"].original_unit == "F"
    assert (vitals["weight"].value, vitals["weight"].unit) == (81.6, "kg")
    assert (vitals["height"].value, vitals["height"].unit) == (177.8, "cm")
    assert vitals["heart_rate"].unit == "/min" and vitals["spo2"].value == 94
    assert vitals["heart_rate"].codes[0].system == LOINC and vitals["heart_rate"].codes[0].code == "8867-4"


def test_labs_read_value_unit_range_flag_and_date(result: MedicalExtraction) -> None:
    labs = {lab.name: lab for lab in result.labs}
    assert (labs["sodium"].value, labs["sodium"].flag, labs["sodium"].unit) == (131, "low", "mmol/L")
    assert (labs["potassium"].value, labs["potassium"].flag) == (5.6, "high")
    creatinine = labs["creatinine"]
    assert (creatinine.reference_low, creatinine.reference_high, creatinine.flag) == (0.6, 1.2, "high")
    assert labs["hemoglobin a1c"].value == 8.2 and labs["hemoglobin a1c"].unit == "%"
    assert all(lab.date == "2024-03-04" for lab in labs.values())
    assert [(c.system, c.code) for c in labs["sodium"].codes] == [(LOINC, "2951-2")]


def test_allergies_with_reactions_and_severity(result: MedicalExtraction) -> None:
    allergies = {a.substance: a for a in result.allergies}
    assert allergies["penicillins"].reactions == ["urticaria"]
    assert allergies["penicillins"].category == "medication"
    shellfish = allergies["shellfish"]
    assert shellfish.category == "food" and shellfish.severity == "severe"
    assert shellfish.reactions == ["anaphylaxis"]
    assert not [m for m in result.medications if m.name.startswith("penicillin")]


@pytest.mark.parametrize("phrase", ["NKDA", "No known drug allergies", "Allergies: none", "NKA"])
def test_no_known_allergies(extractor: MedicalExtractor, phrase: str) -> None:
    out = extractor.extract(f"Allergies: {phrase}\n" if not phrase.startswith("Allergies") else phrase)
    assert [a.no_known_allergies for a in out.allergies] == [True]
    assert not out.allergies[0].context.negated


def test_messy_all_caps_unpunctuated_note(extractor: MedicalExtractor) -> None:
    out = extractor.extract(
        "PMH HTN DM HLD\nMEDS LISINOPRIL 20 DAILY METFORMIN 500 BID\nNO CP NO SOB\nVS BP 150/95 P 80"
    )
    assert {p.name for p in out.problems if not p.context.negated} >= {
        "hypertension", "diabetes mellitus", "hyperlipidemia"}
    assert {p.name for p in out.problems if p.context.negated} == {"chest pain", "shortness of breath"}
    meds = {m.name: m for m in out.medications}
    assert (meds["lisinopril"].dose, meds["lisinopril"].frequency) == (20, "QD")
    assert (meds["metformin"].dose, meds["metformin"].frequency) == (500, "BID")
    assert {v.kind for v in out.vitals} == {"blood_pressure", "heart_rate"}


def test_procedures_with_date(extractor: MedicalExtractor) -> None:
    out = extractor.extract("Past Surgical History: Appendectomy in 1998. Colonoscopy on 3/2/2021.")
    procedures = {p.name: p for p in out.procedures}
    assert procedures["appendectomy"].date == "1998" and procedures["appendectomy"].context.historical
    assert procedures["colonoscopy"].date == "2021-03-02"


def test_empty_and_blank_input_give_an_empty_extraction(extractor: MedicalExtractor) -> None:
    for text in ("", "   \n\n  "):
        out = extractor.extract(text)
        assert out.items() == [] and out.text_length == len(text)


def test_huge_input_is_processed_and_oversized_input_refused(extractor: MedicalExtractor) -> None:
    block = "Metformin 500 mg PO BID. Denies chest pain. BP 120/80.\n"
    text = block * 4000  # ~220 kB
    out = extractor.extract(text)
    assert len(out.medications) == 4000 and len(out.vitals) == 4000
    assert all(text[m.start : m.end] == m.text for m in out.medications[-5:])
    small = MedicalExtractor(limits=ExtractorLimits(max_chars=1000))
    with pytest.raises(PayloadTooLarge) as info:
        small.extract("x" * 1001)
    assert info.value.code == "MEDICAL_TEXT_TOO_LONG" and "xxxx" not in info.value.message
