"""Synthea-like FHIR R4 Bundles generated in code (no data copied from anywhere).

A patient followed for several years: yearly wellness visits with vitals and labs, hypertension and
type 2 diabetes diagnosed along the way with their medications, acute illnesses with short courses,
an allergy, procedures, clinical notes as DiagnosticReport/DocumentReference attachments, and resource
types the summariser does not use (Immunization, Claim, ExplanationOfBenefit) as Synthea exports them.
"""

from __future__ import annotations

import base64
import random
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

from faker import Faker

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"

ACUTE = [
    ("444814009", "Viral sinusitis (disorder)", ("308182", "Amoxicillin 250 MG Oral Capsule")),
    ("10509002", "Acute bronchitis (disorder)", ("313782", "Acetaminophen 325 MG Oral Tablet")),
    ("195662009", "Acute viral pharyngitis (disorder)", ("313782", "Acetaminophen 325 MG Oral Tablet")),
]
UNUSED_TYPES = ("Immunization", "Claim", "ExplanationOfBenefit")


@dataclass
class Truth:
    """What the generator put in, for assertions."""

    patient_name: str = ""
    birth_date: date = date(1960, 1, 1)
    encounters: int = 0
    hba1c: list[tuple[date, float]] = field(default_factory=list)
    systolic: list[tuple[date, float]] = field(default_factory=list)
    conditions: list[str] = field(default_factory=list)
    medications: list[str] = field(default_factory=list)
    unused: dict[str, int] = field(default_factory=dict)
    allergy: str = "Allergy to penicillin"


def _coding(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def _ts(d: date, hour: int = 9) -> str:
    return datetime(d.year, d.month, d.day, hour, 0, tzinfo=timezone(timedelta(hours=-5))).isoformat()


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def make_bundle(
    *, seed: int = 7, years: int = 6, start: date = date(2017, 3, 1), acute_per_year: int = 1,
    observations_per_visit: int = 0, notes: bool = True, long_notes: bool = False,
) -> tuple[dict[str, Any], Truth]:
    """A ``collection`` Bundle and the :class:`Truth` it encodes.

    ``observations_per_visit`` adds that many extra lab observations to each wellness visit (to make
    large bundles for chunking tests and the benchmark).
    """
    rng = random.Random(seed)
    fake = Faker("en_US")
    fake.seed_instance(seed)
    truth = Truth()
    entries: list[dict[str, Any]] = []

    def uid() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    def add(resource: dict[str, Any]) -> str:
        rid = resource.setdefault("id", uid())
        entries.append({"fullUrl": f"urn:uuid:{rid}", "resource": resource, "request": {"method": "POST",
                        "url": resource["resourceType"]}})
        return f"urn:uuid:{rid}"

    given, family = fake.first_name(), fake.last_name()
    truth.patient_name = f"{given} {family}"
    truth.birth_date = date(start.year - rng.randint(45, 70), rng.randint(1, 12), rng.randint(1, 28))
    patient = add({
        "resourceType": "Patient",
        "identifier": [{"type": _coding("http://terminology.hl7.org/CodeSystem/v2-0203", "MR", "Medical Record Number"),
                        "system": "https://example.org/mrn", "value": f"MRN{rng.randint(100000, 999999)}"}],
        "name": [{"use": "official", "family": family, "given": [given]}],
        "gender": rng.choice(["male", "female"]),
        "birthDate": truth.birth_date.isoformat(),
        "address": [{"line": [fake.street_address()], "city": fake.city(), "state": "MA"}],
    })
    subject = {"reference": patient}

    def unused(kind: str, when: date, enc: str) -> None:
        truth.unused[kind] = truth.unused.get(kind, 0) + 1
        if kind == "Immunization":
            add({"resourceType": "Immunization", "status": "completed", "patient": subject,
                 "encounter": {"reference": enc}, "occurrenceDateTime": _ts(when),
                 "vaccineCode": _coding("http://hl7.org/fhir/sid/cvx", "140", "Influenza, seasonal")})
        else:
            add({"resourceType": kind, "status": "active", "patient": subject, "created": _ts(when)})

    def observation(enc: str, when: date, code: str, display: str, value: float, unit: str, category: str) -> None:
        add({"resourceType": "Observation", "status": "final",
             "category": [_coding("http://terminology.hl7.org/CodeSystem/observation-category", category, category)],
             "code": _coding(LOINC, code, display), "subject": subject, "encounter": {"reference": enc},
             "effectiveDateTime": _ts(when), "issued": _ts(when, 10),
             "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}})

    add({"resourceType": "AllergyIntolerance", "clinicalStatus": _coding(
        "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "active", "Active"),
        "type": "allergy", "category": ["medication"], "criticality": "high",
        "code": _coding(SNOMED, "91936005", truth.allergy), "patient": subject,
        "recordedDate": _ts(start - timedelta(days=400)),
        "reaction": [{"manifestation": [_coding(SNOMED, "247472004", "Hives")]}]})

    systolic, diastolic, a1c, weight = 128.0, 82.0, 5.6, 82.0 + rng.random() * 10
    htn_year, dm_year = 1, 2
    for year in range(years):
        when = date(start.year + year, start.month, min(start.day + rng.randint(0, 20), 28))
        enc_id = uid()
        enc = add({"resourceType": "Encounter", "id": enc_id, "status": "finished",
                   "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                   "type": [_coding(SNOMED, "162673000", "General examination of patient (procedure)")],
                   "subject": subject, "period": {"start": _ts(when), "end": _ts(when, 10)}})
        truth.encounters += 1
        systolic += rng.uniform(3, 7)
        diastolic += rng.uniform(1, 3)
        a1c = round(a1c + rng.uniform(0.25, 0.5), 1)
        weight += rng.uniform(-1, 2)
        sbp, dbp = round(systolic), round(diastolic)
        truth.systolic.append((when, sbp))
        truth.hba1c.append((when, a1c))
        add({"resourceType": "Observation", "status": "final",
             "category": [_coding("http://terminology.hl7.org/CodeSystem/observation-category", "vital-signs",
                                  "vital-signs")],
             "code": _coding(LOINC, "85354-9", "Blood pressure panel with all children optional"),
             "subject": subject, "encounter": {"reference": enc}, "effectiveDateTime": _ts(when),
             "component": [
                 {"code": _coding(LOINC, "8480-6", "Systolic Blood Pressure"),
                  "valueQuantity": {"value": sbp, "unit": "mm[Hg]"}},
                 {"code": _coding(LOINC, "8462-4", "Diastolic Blood Pressure"),
                  "valueQuantity": {"value": dbp, "unit": "mm[Hg]"}}]})
        observation(enc, when, "29463-7", "Body Weight", round(weight, 1), "kg", "vital-signs")
        observation(enc, when, "8867-4", "Heart rate", float(rng.randint(62, 88)), "/min", "vital-signs")
        observation(enc, when, "4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", a1c, "%", "laboratory")
        observation(enc, when, "2339-0", "Glucose", float(rng.randint(90, 160)), "mg/dL", "laboratory")
        for k in range(observations_per_visit):
            observation(enc, when, "2160-0", "Creatinine", round(0.8 + rng.random() * 0.4 + k * 0.001, 2), "mg/dL",
                        "laboratory")
        if year == htn_year:
            add({"resourceType": "Condition", "clinicalStatus": _coding(
                "http://terminology.hl7.org/CodeSystem/condition-clinical", "active", "Active"),
                "verificationStatus": _coding("http://terminology.hl7.org/CodeSystem/condition-ver-status",
                                              "confirmed", "Confirmed"),
                "code": _coding(SNOMED, "59621000", "Essential hypertension (disorder)"), "subject": subject,
                "encounter": {"reference": enc}, "onsetDateTime": _ts(when), "recordedDate": _ts(when)})
            truth.conditions.append("Essential hypertension (disorder)")
            add({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
                 "medicationCodeableConcept": _coding(RXNORM, "314076", "lisinopril 10 MG Oral Tablet"),
                 "subject": subject, "encounter": {"reference": enc}, "authoredOn": _ts(when),
                 "dosageInstruction": [{"text": "one tablet daily"}]})
            truth.medications.append("lisinopril 10 MG Oral Tablet")
        if year == dm_year:
            add({"resourceType": "Condition", "clinicalStatus": _coding(
                "http://terminology.hl7.org/CodeSystem/condition-clinical", "active", "Active"),
                "code": _coding(SNOMED, "44054006", "Diabetes mellitus type 2 (disorder)"), "subject": subject,
                "encounter": {"reference": enc}, "onsetDateTime": _ts(when), "recordedDate": _ts(when)})
            truth.conditions.append("Diabetes mellitus type 2 (disorder)")
            add({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
                 "medicationCodeableConcept": _coding(RXNORM, "860975",
                                                      "24 HR Metformin hydrochloride 500 MG Extended Release Oral Tablet"),
                 "subject": subject, "encounter": {"reference": enc}, "authoredOn": _ts(when)})
            truth.medications.append("24 HR Metformin hydrochloride 500 MG Extended Release Oral Tablet")
            add({"resourceType": "Procedure", "status": "completed",
                 "code": _coding(SNOMED, "710824005", "Assessment of health and social care needs (procedure)"),
                 "subject": subject, "encounter": {"reference": enc}, "performedPeriod": {"start": _ts(when),
                                                                                          "end": _ts(when, 10)}})
        unused("Immunization", when, enc)
        unused("Claim", when, enc)
        unused("ExplanationOfBenefit", when, enc)
        if notes:
            text = (f"Patient seen for annual examination on {when.isoformat()}. BP {sbp}/{dbp}. "
                    f"HbA1c {a1c}%. Denies chest pain.")
            if year >= htn_year:
                text += " Continues lisinopril."
            if long_notes:
                text += _long_note(fake, rng, year >= htn_year, year >= dm_year, truth.allergy)
            add({"resourceType": "DocumentReference", "status": "current",
                 "type": _coding(LOINC, "34117-2", "History and physical note"), "subject": subject,
                 "date": _ts(when, 11), "content": [{"attachment": {"contentType": "text/plain; charset=utf-8",
                                                                     "data": _b64(text)}}],
                 "context": {"encounter": [{"reference": enc}], "period": {"start": _ts(when)}}})
        for _ in range(acute_per_year):
            acute_day = when + timedelta(days=rng.randint(60, 250))
            code, display, (rx, drug) = rng.choice(ACUTE)
            aenc = add({"resourceType": "Encounter", "status": "finished",
                        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                        "type": [_coding(SNOMED, "185345009", "Encounter for symptom")],
                        "reasonCode": [_coding(SNOMED, code, display)],
                        "subject": subject, "period": {"start": _ts(acute_day), "end": _ts(acute_day, 10)}})
            truth.encounters += 1
            add({"resourceType": "Condition", "clinicalStatus": _coding(
                "http://terminology.hl7.org/CodeSystem/condition-clinical", "resolved", "Resolved"),
                "code": _coding(SNOMED, code, display), "subject": subject, "encounter": {"reference": aenc},
                "onsetDateTime": _ts(acute_day), "abatementDateTime": _ts(acute_day + timedelta(days=12))})
            add({"resourceType": "MedicationRequest", "status": "stopped", "intent": "order",
                 "medicationCodeableConcept": _coding(RXNORM, rx, drug), "subject": subject,
                 "encounter": {"reference": aenc}, "authoredOn": _ts(acute_day)})
            observation(aenc, acute_day, "8310-5", "Body temperature", round(37.5 + rng.random(), 1), "Cel",
                        "vital-signs")
            if notes:
                add({"resourceType": "DiagnosticReport", "status": "final",
                     "code": _coding(LOINC, "11506-3", "Progress note"), "subject": subject,
                     "encounter": {"reference": aenc}, "effectiveDateTime": _ts(acute_day),
                     "presentedForm": [{"contentType": "text/plain", "data": _b64(
                         f"Acute visit. Assessment: {display.split(' (')[0].lower()}. Plan: {drug.split()[0]}.")}]})
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}, truth


def _long_note(fake: Faker, rng: random.Random, hypertension: bool, diabetes: bool, allergy: str) -> str:
    """The rest of a wellness note the way encounter notes are written: who saw the patient, history,
    medications with Latin dosing abbreviations, a negated symptom list, plan."""
    lines = [
        f"\n\nSeen by Dr. {fake.last_name()} with {fake.first_name()} {fake.last_name()}, RN.",
        f"History: {fake.sentence(nb_words=10)}",
        f"Allergies: {allergy.replace('Allergy to ', '')}.",
        "Review of systems: no fever, no chills, no shortness of breath.",
    ]
    if diabetes:
        lines.append("No fever but known diabetes on metformin 500 mg p.o. b.i.d. with meals.")
    if hypertension:
        lines.append("Lisinopril 10 mg p.o. q.d. continued; home readings reviewed.")
    lines += [
        f"Social history: {rng.choice(['never smoker', 'former smoker, quit 10 years ago', 'no tobacco use'])}.",
        f"Plan: return in one year. {fake.sentence(nb_words=8)}",
    ]
    return "\n".join(lines)


SYNTHEA_ENTRIES, SYNTHEA_NOTES = 314, 37  # the size of a public Synthea R4 patient bundle


def make_synthea_sized_bundle(seed: int = 2024) -> tuple[dict[str, Any], Truth]:
    """A bundle of the size and shape of a Synthea R4 export: 314 entries, 37 of them notes (twelve
    years of wellness and acute visits, long notes, labs), generated here rather than taken from
    Synthea's sample set."""
    bundle, truth = make_bundle(seed=seed, years=12, acute_per_year=2, observations_per_visit=5, long_notes=True)
    entries = bundle["entry"]
    encounters = [e["resource"] for e in entries if e["resource"]["resourceType"] == "Encounter"]
    patient = next(e["fullUrl"] for e in entries if e["resource"]["resourceType"] == "Patient")
    rng = random.Random(seed)
    visit = 0
    while sum(_is_note(e["resource"]) for e in entries) < SYNTHEA_NOTES:
        enc = encounters[visit % len(encounters)]
        visit += 1
        when = enc["period"]["start"]
        entries.append({"fullUrl": f"urn:uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}", "resource": {
            "resourceType": "DocumentReference", "status": "current",
            "type": _coding(LOINC, "11488-4", "Consult note"), "subject": {"reference": patient}, "date": when,
            "content": [{"attachment": {"contentType": "text/plain", "data": _b64(
                "Telephone follow-up. Seen by Dr. Okafor last week. Taking medicines as prescribed; "
                "denies dizziness. No fever but known diabetes on metformin.")}}],
            "context": {"encounter": [{"reference": f"urn:uuid:{enc['id']}"}]}}})
    while len(entries) < SYNTHEA_ENTRIES:
        enc = encounters[visit % len(encounters)]
        visit += 1
        entries.append({"fullUrl": f"urn:uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}", "resource": {
            "resourceType": "Observation", "status": "final",
            "code": _coding(LOINC, "2093-3", "Total Cholesterol"), "subject": {"reference": patient},
            "encounter": {"reference": f"urn:uuid:{enc['id']}"}, "effectiveDateTime": enc["period"]["start"],
            "valueQuantity": {"value": float(rng.randint(150, 240)), "unit": "mg/dL",
                              "system": "http://unitsofmeasure.org", "code": "mg/dL"}}})
    return bundle, truth


def _is_note(resource: dict[str, Any]) -> bool:
    return resource["resourceType"] in ("DocumentReference", "DiagnosticReport") and bool(
        resource.get("content") or resource.get("presentedForm"))
