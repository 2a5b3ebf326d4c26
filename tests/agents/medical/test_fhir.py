"""The FHIR Bundle: every resource validates with fhir.resources; grounding and codes carried over."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from ai_med_extract.agents.medical.extractor import MedicalExtractor
from ai_med_extract.agents.medical.fhir import GROUNDING_URL, bundle_dict, to_fhir_bundle

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


def test_an_invalid_resource_is_refused_by_validation(extractor: MedicalExtractor) -> None:
    from fhir.resources.R4B.bundle import Bundle

    data = bundle_dict(extractor.extract(NOTE))
    statement = next(e["resource"] for e in data["entry"] if e["resource"]["resourceType"] == "MedicationStatement")
    statement["dosage"] = "twice a day"  # a list of Dosage elements, not a string
    with pytest.raises(ValidationError):
        Bundle.model_validate(data)
