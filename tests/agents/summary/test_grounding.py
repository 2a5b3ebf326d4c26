"""The grounding check keeps what the record says and removes (or flags) what it does not."""

from __future__ import annotations

from datetime import date

from ai_med_extract.agents.summary import load_record
from ai_med_extract.agents.summary.grounding import GroundingIndex, ground_text
from ai_med_extract.agents.summary.guidelines import evaluate
from ai_med_extract.agents.summary.mentions import DrugDictionary
from ai_med_extract.agents.summary.output import GroundingReport
from tests.agents.summary.test_inputs import PATIENT_MODEL


def _index(drugs: DrugDictionary) -> GroundingIndex:
    return GroundingIndex(load_record(PATIENT_MODEL), drugs)


def test_supported_sentences_are_kept_and_cite_the_facts_they_match(drugs: DrugDictionary) -> None:
    report = GroundingReport(mode="remove")
    out = ground_text(
        "On 2021-02-10 HbA1c was 7.9% and metformin was prescribed for type 2 diabetes. "
        "By August 2021 HbA1c fell to 7.1% and lisinopril was added for hypertension.",
        _index(drugs), mode="remove", report=report,
    )
    assert report.checked == 2 and report.supported == 2 and report.removed == 0
    assert all(s.citations for s in out)
    record = load_record(PATIENT_MODEL)
    cited = {f.label for f in record.facts if f.id in out[0].citations}
    assert "HbA1c" in {f.label for f in record.facts} or cited  # cites real facts
    assert any("metformin" in label.lower() for label in cited)


def test_a_planted_drug_not_in_the_record_is_removed(drugs: DrugDictionary) -> None:
    report = GroundingReport(mode="remove")
    out = ground_text(
        "Metformin was continued. The patient was also started on warfarin 5 mg daily.",
        _index(drugs), mode="remove", report=report,
    )
    assert [s.text for s in out] == ["Metformin was continued."]
    assert report.removed == 1 and report.unsupported_claims.get("drug") == 1


def test_a_planted_value_not_in_the_record_is_removed(drugs: DrugDictionary) -> None:
    report = GroundingReport(mode="remove")
    out = ground_text("HbA1c was 12.4% in August 2021. Blood pressure was 142/88.", _index(drugs),
                      mode="remove", report=report)
    assert [s.text for s in out] == ["Blood pressure was 142/88."]
    assert report.unsupported_claims == {"number": 1}


def test_planted_dates_and_diagnoses_are_flagged_in_flag_mode(drugs: DrugDictionary) -> None:
    report = GroundingReport(mode="flag")
    out = ground_text(
        "A stroke was recorded in 2019. Hypertension was diagnosed on 2021-08-15.",
        _index(drugs), mode="flag", report=report,
    )
    assert len(out) == 2 and report.flagged == 1 and report.supported == 1
    assert set(out[0].flags) == {"date", "diagnosis"}
    assert out[1].flags == []


def test_citation_markers_are_checked_and_moved_out_of_the_text(drugs: DrugDictionary) -> None:
    index = _index(drugs)
    report = GroundingReport(mode="remove")
    out = ground_text("Lisinopril was added [F12]. Metformin was started [F9999].", index, mode="remove",
                      report=report)
    assert report.unsupported_claims.get("citation") == 1
    assert out[0].text == "Lisinopril was added." and "F12" in out[0].citations


def test_repeated_sentences_are_checked_and_reported_once(drugs: DrugDictionary) -> None:
    report = GroundingReport(mode="remove")
    out = ground_text("Metformin was continued. Metformin was continued. Metformin was continued.", _index(drugs),
                      mode="remove", report=report)
    assert len(out) == 1 and report.checked == 1


def test_degenerate_generation_loops_are_cut() -> None:
    from ai_med_extract.agents.summary.generation import trim_repetition

    looped = "2021-02-10 to 2021-08-15: " * 5
    assert trim_repetition(looped) == "2021-02-10 to 2021-08-15:"
    fine = "HbA1c rose from 7.1 to 7.9. Metformin was started. Lisinopril was added."
    assert trim_repetition(fine) == fine


def test_record_facts_restated_in_the_templates_form_are_supported(drugs: DrugDictionary) -> None:
    record = load_record(PATIENT_MODEL)
    checks = evaluate(record, drugs, date(2021, 8, 15))
    index = GroundingIndex(record, drugs, checks)
    gap = next(c for c in checks if c.rule == "diabetes.hba1c_control")
    report = GroundingReport(mode="flag")
    out = ground_text(
        # a visit line with the count of items it leaves out, the record's span, a guideline gap
        # with the rule's threshold, and the count of orders of one drug
        "2021-02-10: Routine check: diagnosed Type 2 diabetes mellitus; prescribed metformin; and 3 more item(s). "
        "The record covers 2021-02-10 to 2021-08-15 with 2 encounter(s). "
        f"Guideline gap: {gap.title}: {gap.detail} "
        "Metformin was ordered at 2 visits.",
        index, mode="flag", report=report,
    )
    assert gap.status == "not_met" and "7.0" in gap.title
    assert report.checked == 4 and report.supported == 4, [(s.text, s.flags) for s in out]
    assert all(s.flags == [] for s in out)


def test_template_shaped_statements_with_an_absent_drug_condition_or_count_are_removed(drugs: DrugDictionary) -> None:
    record = load_record(PATIENT_MODEL)
    index = GroundingIndex(record, drugs, evaluate(record, drugs, date(2021, 8, 15)))
    report = GroundingReport(mode="remove")
    out = ground_text(
        "2021-02-10: Routine check: diagnosed Type 2 diabetes mellitus; prescribed warfarin. "
        "2021-08-15: Follow-up: diagnosed atrial fibrillation; prescribed lisinopril. "
        "2021-08-15: Follow-up: diagnosed Hypertension; and 57 more item(s). "
        "2021-08-15: Follow-up: diagnosed Hypertension; prescribed lisinopril.",
        index, mode="remove", report=report,
    )
    assert [s.text for s in out] == ["2021-08-15: Follow-up: diagnosed Hypertension; prescribed lisinopril."]
    assert report.removed == 3
    assert report.unsupported_claims == {"drug": 1, "diagnosis": 1, "count": 1}
    # a guideline threshold is supported only when the checks are handed in
    bare = GroundingReport(mode="remove")
    ground_text("HbA1c is above the 7.0 % target of the guideline.", GroundingIndex(record, drugs),
                mode="remove", report=bare)
    assert bare.removed == 1
