"""The FHIR Bundle: every resource validates against FHIR R4 (4.0.1); grounding and codes carried over."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ai_med_extract.agents.medical.extractor import MedicalExtractor
from ai_med_extract.agents.medical.fhir import (
    GROUNDING_URL,
    FhirInvalid,
    bundle_dict,
    to_fhir_bundle,
    to_ndjson,
    validate_r4,
)

EVAL_SET = Path(__file__).resolve().parents[3] / "bench" / "data" / "medical_eval.jsonl"

NOTE = """Family History: father with colon cancer.
HPI: hypertension. No fever. Possible pneumonia.
Meds: metformin 500 mg PO BID, albuterol 2 puffs q4h prn wheezing, stopped warfarin
Allergies: penicillin (hives)
Vitals: BP 130/85, Temp 101.2 F
Labs: glucose 182 mg/dL (H) (70-99), troponin <0.01
Plan: colonoscopy
"""


@pytest.fixture(scope="module")
def bundle(extractor: MedicalExtractor) -> dict:
    return to_fhir_bundle(extractor.extract(NOTE), seed="note-1")


def resources(bundle: dict, kind: str) -> list[dict]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def test_bundle_holds_each_resource_type(bundle: dict) -> None:
    kinds = {e["resource"]["resourceType"] for e in bundle["entry"]}
    assert kinds == {"Patient", "Condition", "FamilyMemberHistory", "MedicationStatement", "Observation",
                     "AllergyIntolerance", "Procedure"}
    assert bundle["type"] == "collection"
    assert all(e["fullUrl"] == f"urn:uuid:{e['resource']['id']}" for e in bundle["entry"])


def test_conditions_carry_verification_status_and_icd10cm(bundle: dict) -> None:
    conditions = {c["code"]["text"]: c for c in resources(bundle, "Condition")}
    assert conditions["fever"]["verificationStatus"]["coding"][0]["code"] == "refuted"
    assert "clinicalStatus" not in conditions["fever"]
    assert conditions["pneumonia"]["verificationStatus"]["coding"][0]["code"] == "unconfirmed"
    coding = conditions["hypertension"]["code"]["coding"][0]
    assert (coding["system"], coding["code"]) == ("http://hl7.org/fhir/sid/icd-10-cm", "I10")
    [family] = resources(bundle, "FamilyMemberHistory")
    assert family["condition"][0]["code"]["text"] == "colon cancer"


def test_medication_statements_have_dosage_and_timing(bundle: dict) -> None:
    statements = {m["medicationCodeableConcept"]["text"]: m for m in resources(bundle, "MedicationStatement")}
    dosage = statements["metformin"]["dosage"][0]
    assert dosage["timing"]["repeat"] == {"frequency": 2, "period": 1.0, "periodUnit": "d"}
    assert dosage["doseAndRate"][0]["doseQuantity"] == {
        "value": 500.0, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}
    assert dosage["route"]["text"] == "oral"
    albuterol = statements["albuterol"]["dosage"][0]
    assert albuterol["asNeededCodeableConcept"]["text"] == "wheezing"
    assert albuterol["timing"]["repeat"]["periodUnit"] == "h"
    assert statements["warfarin"]["status"] == "stopped"


def test_observations_use_ucum_and_loinc(bundle: dict) -> None:
    observations = resources(bundle, "Observation")
    bp = next(o for o in observations if o["code"]["text"] == "blood pressure")
    assert [c["code"]["coding"][0]["code"] for c in bp["component"]] == ["8480-6", "8462-4"]
    assert bp["component"][0]["valueQuantity"]["code"] == "mm[Hg]"
    temp = next(o for o in observations if o["code"]["text"] == "temperature")
    assert temp["valueQuantity"]["code"] == "Cel" and temp["valueQuantity"]["value"] == 38.4
    glucose = next(o for o in observations if o["code"]["text"] == "glucose")
    assert glucose["valueQuantity"]["code"] == "mg/dL"
    assert glucose["referenceRange"][0]["high"]["value"] == 99
    assert glucose["interpretation"][0]["coding"][0]["code"] == "H"
    troponin = next(o for o in observations if o["code"]["text"] == "troponin i")
    assert troponin["valueQuantity"]["comparator"] == "<"


def test_allergy_and_procedure(bundle: dict) -> None:
    [allergy] = resources(bundle, "AllergyIntolerance")
    assert allergy["reaction"][0]["manifestation"][0]["text"] == "urticaria"
    [procedure] = resources(bundle, "Procedure")
    assert procedure["code"]["text"] == "colonoscopy" and procedure["status"] == "preparation"


def test_every_resource_carries_its_grounding(bundle: dict) -> None:
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "Patient":
            continue
        [ext] = [e for e in resource["extension"] if e["url"] == GROUNDING_URL]
        values = {e["url"]: next(v for k, v in e.items() if k.startswith("value")) for e in ext["extension"]}
        assert NOTE[values["start"] : values["end"]]


def test_bundles_of_all_evaluation_notes_validate(extractor: MedicalExtractor) -> None:
    for line in EVAL_SET.read_text().splitlines():
        note = json.loads(line)
        bundle = to_fhir_bundle(extractor.extract(note["text"]), seed=note["id"])
        assert bundle["entry"]


def test_an_invalid_resource_is_refused_by_r4_validation(extractor: MedicalExtractor) -> None:
    data = bundle_dict(extractor.extract(NOTE))
    statement = next(e["resource"] for e in data["entry"] if e["resource"]["resourceType"] == "MedicationStatement")
    dosage = statement["dosage"]
    statement["dosage"] = "twice a day"  # a list of Dosage elements, not a string
    with pytest.raises(FhirInvalid) as caught:
        validate_r4(data)
    assert "twice" not in str(caught.value.details)  # element paths only, never the values
    paths = caught.value.details["paths"]
    assert paths and all(p.startswith("Bundle.entry[") and ".resource.dosage" in p for p in paths)
    procedure = next(e["resource"] for e in data["entry"] if e["resource"]["resourceType"] == "Procedure")
    statement["dosage"] = dosage
    validate_r4(data)
    procedure["performedString"] = "2019"  # R4 has performedString, but not beside performedDateTime
    procedure["performedDateTime"] = "2019"
    with pytest.raises(FhirInvalid):
        validate_r4(data)


def test_the_validator_is_fhir_r4_4_0_1() -> None:
    import fhirkit

    assert fhirkit.FHIR_VERSION == "4.0.1"


def test_vital_signs_carry_the_r4_profile_and_every_observation_an_effective_time(bundle: dict) -> None:
    for obs in resources(bundle, "Observation"):
        assert "effectiveDateTime" in obs or obs["_effectiveDateTime"]["extension"][0]["valueCode"] == "unknown"
        if obs["category"][0]["coding"][0]["code"] == "vital-signs":
            assert obs["meta"]["profile"][0] == "http://hl7.org/fhir/StructureDefinition/vitalsigns"
    bp = next(o for o in resources(bundle, "Observation") if o["code"]["text"] == "blood pressure")
    assert bp["meta"]["profile"][1] == "http://hl7.org/fhir/StructureDefinition/bp"


def test_a_date_on_the_line_dates_the_observation_and_the_procedure(extractor: MedicalExtractor) -> None:
    note = "Labs 3/4/98: Na 131, K 4.1\nVitals 2024-05-06: HR 88\nColonoscopy March 2019, normal."
    bundle = to_fhir_bundle(extractor.extract(note))
    dated = {o["code"]["text"]: o.get("effectiveDateTime") for o in resources(bundle, "Observation")}
    assert dated == {"sodium": "1998-03-04", "potassium": "1998-03-04", "heart rate": "2024-05-06"}
    [procedure] = resources(bundle, "Procedure")
    assert procedure["performedDateTime"] == "2019-03" and "performedString" not in procedure


@pytest.mark.parametrize(("phrase", "code"), [
    ("NKDA", "409137002"), ("No known allergies", "716186003"), ("No known food allergies", "429625007"),
])
def test_no_known_allergies_is_a_coded_allergy_intolerance(extractor: MedicalExtractor, phrase: str,
                                                           code: str) -> None:
    bundle = to_fhir_bundle(extractor.extract(f"Allergies: {phrase}."))
    [allergy] = resources(bundle, "AllergyIntolerance")
    assert allergy["code"]["coding"] == [
        {"system": "http://snomed.info/sct", "code": code, "display": allergy["code"]["coding"][0]["display"]}]
    assert allergy["clinicalStatus"]["coding"][0]["code"] == "active"
    assert allergy["verificationStatus"]["coding"][0]["code"] == "confirmed"


def test_unit_doses_are_international_units(extractor: MedicalExtractor) -> None:
    bundle = to_fhir_bundle(extractor.extract("Meds: insulin glargine 20 units subq qhs"))
    [statement] = resources(bundle, "MedicationStatement")
    quantity = statement["dosage"][0]["doseAndRate"][0]["doseQuantity"]
    assert (quantity["value"], quantity["code"], quantity["system"]) == (20, "[IU]", "http://unitsofmeasure.org")


def test_ndjson_export_has_one_resource_per_line_with_local_references(bundle: dict) -> None:
    files = to_ndjson([bundle, bundle])  # the same bundle twice: each resource once
    assert set(files) == {e["resource"]["resourceType"] for e in bundle["entry"]}
    assert sum(len(lines) for lines in files.values()) == len(bundle["entry"])
    [patient_line] = files["Patient"]
    patient_id = json.loads(patient_line)["id"]
    for line in files["Condition"]:
        resource = json.loads(line)
        assert "\n" not in line and resource["subject"] == {"reference": f"Patient/{patient_id}"}


@pytest.mark.parametrize("line", [
    "Procedures: dialysis 2024-01-02 to 2024-01-09.",
    "Procedures: dialysis from 01/02/2024 through 01/09/2024.",
    "Procedures: dialysis 01/02/2024 - 01/09/2024.",
])
def test_a_procedure_with_a_start_and_an_end_date_is_performed_over_a_period(
    extractor: MedicalExtractor, line: str
) -> None:
    extraction = extractor.extract(line)
    [procedure] = extraction.procedures
    assert (procedure.date, procedure.end_date) == ("2024-01-02", "2024-01-09")
    bundle = to_fhir_bundle(extraction)  # validated against R4 4.0.1
    [resource] = resources(bundle, "Procedure")
    assert resource["performedPeriod"] == {"start": "2024-01-02", "end": "2024-01-09"}
    assert "performedDateTime" not in resource and "performedString" not in resource


@pytest.mark.parametrize(("line", "performed"), [
    ("Procedures: dialysis 2024-01-09 to 2024-01-02.", "2024-01-09"),  # an end before the start is no period
    ("Procedures: dialysis 2024-01-02 and 2024-01-09.", "2024-01-02"),  # two sessions, not a range
])
def test_a_procedure_without_a_period_keeps_one_performed_date(
    extractor: MedicalExtractor, line: str, performed: str
) -> None:
    [resource] = resources(to_fhir_bundle(extractor.extract(line)), "Procedure")
    assert resource["performedDateTime"] == performed and "performedPeriod" not in resource


def test_r4_refuses_a_procedure_performed_both_at_a_time_and_over_a_period(extractor: MedicalExtractor) -> None:
    data = bundle_dict(extractor.extract("Procedures: dialysis 2024-01-02 to 2024-01-09."))
    procedure = next(e["resource"] for e in data["entry"] if e["resource"]["resourceType"] == "Procedure")
    validate_r4(data)
    procedure["performedDateTime"] = "2024-01-02"  # performed[x] is a choice: one of them only
    with pytest.raises(FhirInvalid):
        validate_r4(data)
