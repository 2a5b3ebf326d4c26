"""FHIR output: a Bundle (type collection) built from an extraction and validated by ``fhir.resources``.

``fhir.resources`` 8 ships FHIR R5 and R4B; R4B (4.3) is used, whose Condition, MedicationStatement,
Observation, AllergyIntolerance, Procedure and FamilyMemberHistory match FHIR R4 (4.0.1) field for field.
Every resource carries an extension with its grounding (character offsets and detector) and codes only
from the item (never added here). Family-history problems become FamilyMemberHistory, not Conditions
of the patient; negated problems are Conditions with verificationStatus ``refuted``.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from .schema import Allergy, Item, Lab, MedicalExtraction, Medication, Problem, Procedure, Vital
from .vocabulary import UCUM

GROUNDING_URL = "https://ai-med-extract.local/fhir/StructureDefinition/source-span"
_NAMESPACE = uuid.UUID("6f1c2a52-3c55-4a31-9a53-5b0b2f7e4e11")
_INTERP = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
_OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"

_TIMING: dict[str, dict[str, Any]] = {
    "QD": {"frequency": 1, "period": 1, "periodUnit": "d"},
    "BID": {"frequency": 2, "period": 1, "periodUnit": "d"},
    "TID": {"frequency": 3, "period": 1, "periodUnit": "d"},
    "QID": {"frequency": 4, "period": 1, "periodUnit": "d"},
    "QHS": {"frequency": 1, "period": 1, "periodUnit": "d", "when": ["HS"]},
    "QAM": {"frequency": 1, "period": 1, "periodUnit": "d", "when": ["MORN"]},
    "QPM": {"frequency": 1, "period": 1, "periodUnit": "d", "when": ["EVE"]},
    "QOD": {"frequency": 1, "period": 2, "periodUnit": "d"},
    "QW": {"frequency": 1, "period": 1, "periodUnit": "wk"},
    "QMO": {"frequency": 1, "period": 1, "periodUnit": "mo"},
    "ONCE": {"count": 1},
}
_DOSE_UCUM = {"mg": "mg", "mcg": "ug", "g": "g", "unit": "[U]", "meq": "meq", "mmol": "mmol", "mL": "mL",
              "L": "L", "L/min": "L/min", "%": "%", "tablet": "{tablet}", "capsule": "{capsule}",
              "puff": "{puff}", "drop": "[drp]", "patch": "{patch}", "spray": "{spray}"}
_DURATION_UNITS = {"day": "d", "week": "wk", "month": "mo"}
_FLAG_CODES = {"high": "H", "low": "L", "critical_high": "HH", "critical_low": "LL", "abnormal": "A",
               "normal": "N"}
_SEVERITY = {"mild": "mild", "moderate": "moderate", "severe": "severe"}


def _id(seed: str, item_id: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{seed}/{item_id}"))


def _grounding(item: Item) -> list[dict[str, Any]]:
    return [{
        "url": GROUNDING_URL,
        "extension": [
            {"url": "start", "valueInteger": item.start},
            {"url": "end", "valueInteger": item.end},
            {"url": "detector", "valueString": item.detector},
        ] + ([{"url": "section", "valueString": item.section}] if item.section else []),
    }]


def _concept(item: Item, text: str) -> dict[str, Any]:
    concept: dict[str, Any] = {"text": text}
    if item.codes:
        concept["coding"] = [
            {k: v for k, v in {"system": c.system, "code": c.code, "display": c.display}.items() if v}
            for c in item.codes
        ]
    return concept


def _quantity(value: float, unit: str | None) -> dict[str, Any]:
    q: dict[str, Any] = {"value": value}
    if unit:
        q |= {"unit": unit, "system": UCUM, "code": unit}
    return q


def _condition(p: Problem, subject: dict[str, str], rid: str) -> dict[str, Any]:
    verification = "refuted" if p.context.negated else "unconfirmed" if p.context.uncertain else "confirmed"
    resource: dict[str, Any] = {
        "resourceType": "Condition",
        "id": rid,
        "extension": _grounding(p),
        "verificationStatus": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": verification}]},
        "code": _concept(p, p.name),
        "subject": subject,
    }
    if not p.context.negated:
        clinical = "inactive" if p.context.historical else "active"
        resource["clinicalStatus"] = {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": clinical}]}
    return resource


def _family_history(p: Problem, subject: dict[str, str], rid: str) -> dict[str, Any]:
    return {
        "resourceType": "FamilyMemberHistory",
        "id": rid,
        "extension": _grounding(p),
        "status": "partial",
        "patient": subject,
        "relationship": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
                                      "code": "FAMMEMB", "display": "family member"}]},
        "condition": [{"code": _concept(p, p.name)}],
    } | ({"note": [{"text": "condition reported absent"}]} if p.context.negated else {})


def _medication_statement(m: Medication, subject: dict[str, str], rid: str) -> dict[str, Any]:
    dosage: dict[str, Any] = {"text": m.text}
    repeat: dict[str, Any] = {}
    if m.frequency:
        if m.frequency in _TIMING:
            repeat |= _TIMING[m.frequency]
        else:
            hours = re.fullmatch(r"Q(\d+)(?:-(\d+))?H", m.frequency)
            if hours:
                repeat |= {"frequency": 1, "period": int(hours.group(1)), "periodUnit": "h"}
                if hours.group(2):
                    repeat["periodMax"] = int(hours.group(2))
    if m.duration:
        value, unit = m.duration.split()
        repeat |= {"boundsDuration": {"value": float(value), "unit": unit, "system": UCUM,
                                      "code": _DURATION_UNITS[unit]}}
    if repeat:
        dosage["timing"] = {"repeat": repeat}
    if m.route:
        dosage["route"] = {"text": m.route}
    if m.dose is not None:
        quantity: dict[str, Any] = {"value": m.dose}
        if m.unit:
            quantity["unit"] = m.unit
            if m.unit in _DOSE_UCUM:
                quantity |= {"system": UCUM, "code": _DOSE_UCUM[m.unit]}
        dosage["doseAndRate"] = [{"doseQuantity": quantity}]
    if m.prn:
        dosage["asNeededBoolean"] = True
        if m.prn_reason:
            dosage.pop("asNeededBoolean")
            dosage["asNeededCodeableConcept"] = {"text": m.prn_reason}
    return {
        "resourceType": "MedicationStatement",
        "id": rid,
        "extension": _grounding(m),
        "status": m.status,
        "medicationCodeableConcept": _concept(m, m.name),
        "subject": subject,
        "dosage": [dosage],
    }


def _vital_observation(v: Vital, subject: dict[str, str], rid: str) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": rid,
        "extension": _grounding(v),
        "status": "final",
        "category": [{"coding": [{"system": _OBS_CATEGORY, "code": "vital-signs"}]}],
        "code": _concept(v, v.kind.replace("_", " ")),
        "subject": subject,
    }
    if v.kind == "blood_pressure":
        resource["component"] = [
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6",
                                  "display": "Systolic blood pressure"}]},
             "valueQuantity": _quantity(v.value, v.unit)},
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4",
                                  "display": "Diastolic blood pressure"}]},
             "valueQuantity": _quantity(v.diastolic or 0.0, v.unit)},
        ]
    else:
        resource["valueQuantity"] = _quantity(v.value, v.unit)
    return resource


def _lab_observation(lab: Lab, subject: dict[str, str], rid: str) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": rid,
        "extension": _grounding(lab),
        "status": "final",
        "category": [{"coding": [{"system": _OBS_CATEGORY, "code": "laboratory"}]}],
        "code": _concept(lab, lab.name),
        "subject": subject,
    }
    if lab.value is not None:
        quantity = _quantity(lab.value, lab.unit)
        comparator = re.match(r"[<>]=?", lab.value_text or "")
        if comparator:
            quantity["comparator"] = comparator.group()
        resource["valueQuantity"] = quantity
    elif lab.value_text:
        resource["valueString"] = lab.value_text
    if lab.reference_low is not None or lab.reference_high is not None:
        ref: dict[str, Any] = {}
        if lab.reference_low is not None:
            ref["low"] = _quantity(lab.reference_low, lab.unit)
        if lab.reference_high is not None:
            ref["high"] = _quantity(lab.reference_high, lab.unit)
        resource["referenceRange"] = [ref]
    if lab.flag:
        resource["interpretation"] = [{"coding": [{"system": _INTERP, "code": _FLAG_CODES[lab.flag]}]}]
    if lab.date:
        resource["effectiveDateTime"] = lab.date
    return resource


def _allergy(a: Allergy, subject: dict[str, str], rid: str) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "AllergyIntolerance",
        "id": rid,
        "extension": _grounding(a),
        "clinicalStatus": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]},
        "verificationStatus": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
            "code": "refuted" if a.context.negated else "confirmed"}]},
        "code": _concept(a, a.substance),
        "patient": subject,
    }
    if a.category:
        resource["category"] = [a.category if a.category != "medication" else "medication"]
    if a.reactions:
        reaction: dict[str, Any] = {"manifestation": [{"text": r} for r in a.reactions]}
        if a.severity:
            reaction["severity"] = _SEVERITY[a.severity]
        resource["reaction"] = [reaction]
    if a.no_known_allergies:
        resource.pop("clinicalStatus")
    return resource


def _procedure(p: Procedure, subject: dict[str, str], rid: str) -> dict[str, Any]:
    status = "not-done" if p.context.negated else "preparation" if p.context.hypothetical else "completed"
    if p.section == "assessment_and_plan" and not p.context.historical and status == "completed":
        status = "preparation"
    resource: dict[str, Any] = {
        "resourceType": "Procedure",
        "id": rid,
        "extension": _grounding(p),
        "status": status,
        "code": _concept(p, p.name),
        "subject": subject,
    }
    if p.date:
        resource["performedString"] = p.date
    return resource


def bundle_dict(extraction: MedicalExtraction, *, seed: str = "extraction") -> dict[str, Any]:
    """The Bundle as plain JSON-ready data (validate with ``to_fhir_bundle``)."""

    patient_id = _id(seed, "patient")
    subject = {"reference": f"urn:uuid:{patient_id}"}
    resources: list[dict[str, Any]] = [{"resourceType": "Patient", "id": patient_id}]
    for p in extraction.problems:
        rid = _id(seed, p.id)
        resources.append(_family_history(p, subject, rid) if p.context.subject == "family"
                         else _condition(p, subject, rid))
    for m in extraction.medications:
        resources.append(_medication_statement(m, subject, _id(seed, m.id)))
    for v in extraction.vitals:
        resources.append(_vital_observation(v, subject, _id(seed, v.id)))
    for lab in extraction.labs:
        resources.append(_lab_observation(lab, subject, _id(seed, lab.id)))
    for a in extraction.allergies:
        resources.append(_allergy(a, subject, _id(seed, a.id)))
    for pr in extraction.procedures:
        if pr.context.subject != "family":
            resources.append(_procedure(pr, subject, _id(seed, pr.id)))
    return {
        "resourceType": "Bundle",
        "id": _id(seed, "bundle"),
        "type": "collection",
        "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in resources],
    }


def to_fhir_bundle(extraction: MedicalExtraction, *, seed: str = "extraction") -> dict[str, Any]:
    """Build the Bundle and validate it with ``fhir.resources`` (FHIR R4B models); returns JSON data.

    Raises ``pydantic.ValidationError`` if any resource does not conform.
    """

    from fhir.resources.R4B.bundle import Bundle

    data = bundle_dict(extraction, seed=seed)
    bundle = Bundle.model_validate(data)
    return bundle.model_dump(mode="json", exclude_none=True)
