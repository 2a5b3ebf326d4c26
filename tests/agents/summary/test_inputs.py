"""Every input shape becomes facts with sources; malformed input is a 422 that says where."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from ai_med_extract.agents.summary import FactKind, InputKind, load_record
from ai_med_extract.agents.summary.text_facts import read_notes
from ai_med_extract.errors import Unprocessable
from tests.agents.summary.synthetic import Truth, make_bundle

PATIENT_MODEL = {
    "patient_id": "p-001",
    "demographics": {"name": "Ada Example", "dob": "1958-04-02", "gender": "female", "mrn": "MRN-778"},
    "visits": [
        {"visit_id": "v1", "date": "2021-02-10", "chief_complaint": "routine check",
         "diagnoses": ["Type 2 diabetes mellitus"], "medications": ["metformin 500 mg twice daily"],
         "procedures": ["foot examination"], "vitals": {"bp": "142/88", "heart_rate": 76},
         "labs": [{"name": "HbA1c", "value": 7.9, "unit": "%"}, "Creatinine 1.1 mg/dL"]},
        {"visit_id": "v2", "date": "2021-08-15T09:30:00", "chief_complaint": "follow-up",
         "diagnoses": ["Type 2 diabetes mellitus", "Hypertension"],
         "medications": ["metformin 500 mg twice daily", "lisinopril 10 mg daily"],
         "vitals": {"blood_pressure": "134/82"}, "labs": [{"name": "A1c", "value": "7.1", "unit": "%"}]},
    ],
}


def test_fhir_bundle_spanning_years_becomes_dated_facts_with_fhir_sources(bundle: tuple[dict[str, Any], Truth]) -> None:
    data, truth = bundle
    record = load_record(data)
    assert record.kind is InputKind.fhir_bundle
    assert record.demographics.name == truth.patient_name
    assert record.demographics.birth_date == truth.birth_date
    assert len(record.of_kind(FactKind.encounter)) == truth.encounters
    a1c = sorted((f.date, f.value) for f in record.facts if f.concept == "hba1c" and f.source.span is None)
    assert a1c == truth.hba1c
    systolic = sorted((f.date, f.value) for f in record.facts if f.concept == "systolic_bp" and f.source.span is None)
    assert systolic == truth.systolic
    assert record.last_date is not None and record.first_date is not None
    assert record.last_date.year - record.first_date.year >= 5
    conditions = {f.label for f in record.of_kind(FactKind.condition) if f.status == "active"}
    assert set(truth.conditions) <= conditions
    assert all(f.source.path.split("/")[0] in {
        "Encounter", "Condition", "MedicationRequest", "Observation", "Procedure", "AllergyIntolerance",
        "DiagnosticReport", "DocumentReference"} for f in record.facts)
    # observations and conditions are linked to the visit they were recorded at
    assert all(f.encounter for f in record.facts if f.kind is FactKind.observation and f.source.span is None)


def test_unknown_fhir_resources_are_ignored_and_counted(bundle: tuple[dict[str, Any], Truth]) -> None:
    data, truth = bundle
    record = load_record(data)
    for kind, count in truth.unused.items():
        assert record.ignored[kind] == count
    assert record.stats()["ignored_total"] >= sum(truth.unused.values())


def test_notes_attached_to_fhir_resources_are_read(bundle: tuple[dict[str, Any], Truth]) -> None:
    record = load_record(bundle[0])
    notes = record.of_kind(FactKind.note)
    assert any("annual examination" in (n.detail or "") for n in notes)
    assert any(n.source.path.startswith("DiagnosticReport/") for n in notes)


def test_malformed_fhir_is_a_422_that_names_the_place_and_not_the_value() -> None:
    data, _ = make_bundle(seed=3, years=2)
    broken = copy.deepcopy(data)
    index = next(i for i, e in enumerate(broken["entry"]) if e["resource"]["resourceType"] == "Observation"
                 and "valueQuantity" in e["resource"])
    broken["entry"][index]["resource"]["valueQuantity"]["value"] = "SECRET-VALUE-123"
    with pytest.raises(Unprocessable) as caught:
        load_record(broken)
    err = caught.value
    assert err.code == "FHIR_INVALID"
    locs = [e["loc"] for e in err.details["errors"]]
    assert f"entry[{index}].resource(Observation).valueQuantity.value" in locs
    assert "SECRET-VALUE-123" not in json.dumps(err.to_dict())


def test_malformed_entries_without_a_resource_type_are_reported() -> None:
    with pytest.raises(Unprocessable) as caught:
        load_record({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"id": "x"}}]})
    assert caught.value.details["errors"][0]["loc"] == "entry[0].resource.resourceType"


def test_patient_data_model_visits_become_facts_citing_json_paths() -> None:
    record = load_record(PATIENT_MODEL)
    assert record.kind is InputKind.patient_model
    assert record.demographics.mrn == "MRN-778"
    encounters = record.of_kind(FactKind.encounter)
    assert [e.date.isoformat() for e in encounters if e.date] == ["2021-02-10", "2021-08-15"]
    a1c = [(f.value, f.source.path) for f in record.facts if f.concept == "hba1c"]
    assert a1c == [(7.9, "visits[0].labs[0]"), (7.1, "visits[1].labs[0]")]
    bp = [f.value for f in record.facts if f.concept == "systolic_bp"]
    assert bp == [142.0, 134.0]
    creat = [f for f in record.facts if f.concept == "creatinine"]
    assert creat and creat[0].value == 1.1
    assert any(f.concept == "diabetes" for f in record.of_kind(FactKind.condition))


def test_bad_dates_in_the_patient_model_name_their_path() -> None:
    bad = copy.deepcopy(PATIENT_MODEL)
    bad["visits"][1]["date"] = "15/08/2021 or so"
    with pytest.raises(Unprocessable) as caught:
        load_record(bad)
    assert caught.value.details["errors"][0]["loc"] == "visits[1].date"


def test_free_text_notes_yield_drugs_values_and_diagnoses_but_not_negated_ones(reader: Any) -> None:
    notes = [
        "2022-05-01 Clinic note. Known hypertension. BP 150/95. Started amlodipine 5 mg daily. Denies diabetes.",
        {"date": "2022-11-03", "text": "Follow-up. BP 132/84 on amlodipine. HbA1c 5.6%."},
    ]
    record = load_record(notes)
    read_notes(record, reader)
    assert record.kind is InputKind.notes
    assert len(record.of_kind(FactKind.note)) == 2
    assert {f.label for f in record.of_kind(FactKind.medication)} == {"amlodipine"}
    conditions = {f.label for f in record.of_kind(FactKind.condition)}
    assert "hypertension" in conditions and not any("diabet" in c for c in conditions)
    assert sorted(f.value for f in record.facts if f.concept == "systolic_bp") == [132.0, 150.0]
    first_bp = next(f for f in record.facts if f.concept == "systolic_bp" and f.value == 150.0)
    assert first_bp.source.path == "$[0]" and first_bp.source.span is not None
    start, end = first_bp.source.span
    assert notes[0][start:end].startswith("BP 150/95")  # type: ignore[index]


def test_processed_documents_are_read_from_their_text(reader: Any) -> None:
    record = load_record({"documents": [
        {"document_id": "d1", "text": "Discharge summary 2023-01-09. Pneumonia treated with amoxicillin."},
        {"document_id": "d2", "text": ""},
    ]})
    read_notes(record, reader)
    assert record.kind is InputKind.documents
    assert record.ignored["document without text"] == 1
    assert {f.label for f in record.of_kind(FactKind.medication)} == {"amoxicillin"}
    assert record.of_kind(FactKind.note)[0].date is not None


def test_unrecognised_shapes_are_refused() -> None:
    with pytest.raises(Unprocessable):
        load_record({"something": 1})
    with pytest.raises(Unprocessable):
        load_record({"resourceType": "Patient"})


def test_medication_statements_and_referenced_medications_are_read() -> None:
    record = load_record({"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:med-1", "resource": {"resourceType": "Medication", "id": "med-1",
                                                   "code": {"text": "atorvastatin 20 MG Oral Tablet"}}},
        {"resource": {"resourceType": "MedicationStatement", "id": "ms-1", "status": "active",
                      "subject": {"reference": "Patient/1"}, "medicationReference": {"reference": "urn:uuid:med-1"},
                      "effectiveDateTime": "2022-01-02"}},
    ]})
    [med] = record.of_kind(FactKind.medication)
    assert med.label == "atorvastatin 20 MG Oral Tablet" and med.status == "active"
    assert med.source.path == "MedicationStatement/ms-1" and med.date is not None
