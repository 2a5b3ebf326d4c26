"""FHIR R4 (4.0.1) output: a Bundle (type collection) built from an extraction, validated against R4.

Validation uses ``fhirkit-rs`` (import name ``fhirkit``), whose models are generated from the official
R4 4.0.1 definitions of every resource and datatype: it checks elements, cardinalities, datatypes and
choice types offline. (``fhir.resources`` 7 and later ship only R4B and R5; its last plain-R4 release
needs pydantic 1.) Terminology bindings and invariants that validator does not evaluate are kept by
construction here: status codes come from the R4 value sets, vital signs carry the base profile and
the R4 vital-signs profile of their kind, every Observation has ``effective[x]`` (the date written on
its line, else a ``data-absent-reason`` of ``unknown``), procedure dates are ``performedDateTime``
(``performedPeriod`` when the text gives a start and an end),
every Quantity code is checked as UCUM with ``ucumvert`` (else the unit stays text only), and "no
known allergies" is an AllergyIntolerance coded in SNOMED CT as FHIR's value set names it.

Every resource carries an extension with its grounding (character offsets and detector) and codes only
from the item (never added here). Family-history problems become FamilyMemberHistory, not Conditions
of the patient; negated problems are Conditions with verificationStatus ``refuted``.

:func:`to_ndjson` writes the same resources FHIR Bulk Data style: one resource per line, grouped by
resource type, references rewritten from ``urn:uuid:`` to ``Type/id``.
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from collections.abc import Iterable
from typing import Any

from ai_med_extract.errors import AppError
from ai_med_extract.kit.dates import parse_date, parse_fhir_date

from .schema import Allergy, Item, Lab, MedicalExtraction, Medication, Problem, Procedure, Vital
from .vocabulary import UCUM

FHIR_VERSION = "4.0.1"
FHIR_MEDIA_TYPE = "application/fhir+json"
GROUNDING_URL = "https://ai-med-extract.local/fhir/StructureDefinition/source-span"
_NAMESPACE = uuid.UUID("6f1c2a52-3c55-4a31-9a53-5b0b2f7e4e11")
_INTERP = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
_OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
_DATA_ABSENT = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
_VITALSIGNS = "http://hl7.org/fhir/StructureDefinition/vitalsigns"
# the R4 vital-signs profile of each kind (http://hl7.org/fhir/R4/observation-vitalsigns.html)
_VITAL_PROFILES = {
    "blood_pressure": "bp", "heart_rate": "heartrate", "respiratory_rate": "resprate",
    "temperature": "bodytemp", "spo2": "oxygensat", "weight": "bodyweight", "height": "bodyheight",
    "bmi": "bmi",
}

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
# dose units of ``sig.py`` -> UCUM; "unit"/"IU" doses are international units, dose forms are UCUM
# annotations (a count of tablets is the unity "1" annotated)
DOSE_UCUM = {
    "mg": "mg", "mcg": "ug", "g": "g", "unit": "[IU]", "meq": "meq", "mmol": "mmol", "mL": "mL", "L": "L",
    "L/min": "L/min", "%": "%", "mg/mL": "mg/mL", "mg/kg": "mg/kg", "mcg/h": "ug/h", "mg/h": "mg/h",
    "unit/h": "[IU]/h", "tablet": "{tablet}", "capsule": "{capsule}", "puff": "{puff}", "drop": "[drp]",
    "patch": "{patch}", "spray": "{spray}", "ampule": "{ampule}", "vial": "{vial}", "packet": "{packet}",
    "suppository": "{suppository}", "lozenge": "{lozenge}", "application": "{application}",
}
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


@functools.lru_cache(maxsize=1)
def _ucum_parser() -> Any:
    from ucumvert import get_ucum_parser  # imported here: building the grammar takes a moment

    return get_ucum_parser()


@functools.lru_cache(maxsize=1024)
def is_ucum(code: str) -> bool:
    """Whether ``code`` is a valid UCUM expression (``ucumvert``'s grammar of UCUM)."""

    from lark.exceptions import LarkError

    try:
        _ucum_parser().parse(code)
    except LarkError:
        return False
    return True


def _quantity(value: float, unit: str | None, code: str | None = None) -> dict[str, Any]:
    """A Quantity; the unit is coded in UCUM only when ``code`` (default: the unit) is valid UCUM."""

    q: dict[str, Any] = {"value": value}
    if unit:
        q["unit"] = unit
        code = code or unit
        if is_ucum(code):
            q |= {"system": UCUM, "code": code}
    return q


def _fhir_date(value: str | None) -> str | None:
    """A FHIR date from a stored date (ISO, or as written by a clinician's correction); else None."""

    if not value:
        return None
    mention = parse_fhir_date(value) or parse_date(value)
    return mention.iso() if mention else None


def _effective(resource: dict[str, Any], when: str | None) -> None:
    iso = _fhir_date(when)
    if iso:
        resource["effectiveDateTime"] = iso
    else:
        resource["_effectiveDateTime"] = {"extension": [{"url": _DATA_ABSENT, "valueCode": "unknown"}]}


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
        code = DOSE_UCUM.get(m.unit) if m.unit else None
        quantity = _quantity(m.dose, m.unit, code) if code else {"value": m.dose} | (
            {"unit": m.unit} if m.unit else {})
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
        "meta": {"profile": [_VITALSIGNS, f"http://hl7.org/fhir/StructureDefinition/{_VITAL_PROFILES[v.kind]}"]},
        "extension": _grounding(v),
        "status": "final",
        "category": [{"coding": [{"system": _OBS_CATEGORY, "code": "vital-signs", "display": "Vital Signs"}],
                      "text": "Vital Signs"}],
        "code": _concept(v, v.kind.replace("_", " ")),
        "subject": subject,
    }
    _effective(resource, v.date)
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
    _effective(resource, lab.date)
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
    performed, ended = _fhir_date(p.date), _fhir_date(p.end_date)
    if performed and ended:
        resource["performedPeriod"] = {"start": performed, "end": ended}
    elif performed:
        resource["performedDateTime"] = performed
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


class FhirInvalid(AppError):
    """A bundle that does not conform to FHIR R4; ``details`` names element paths only (no values)."""

    status_code = 500
    code = "FHIR_BUNDLE_INVALID"


def validate_r4(resource: dict[str, Any]) -> None:
    """Validate a resource (a Bundle with everything in it) against FHIR R4 4.0.1 with ``fhirkit``.

    Raises :class:`FhirInvalid` naming the failing element paths (issue texts can quote values, which
    may be patient data, so they are not carried).
    """

    import fhirkit

    issues = [i for i in fhirkit.validate(resource) if i.severity == "error"]
    if issues:
        raise FhirInvalid(
            "the FHIR bundle does not conform to FHIR R4",
            details={"paths": sorted({i.path for i in issues})[:20], "issues": len(issues)},
        )


def to_fhir_bundle(extraction: MedicalExtraction, *, seed: str = "extraction") -> dict[str, Any]:
    """Build the Bundle and validate it against FHIR R4 (4.0.1); returns JSON data.

    Raises :class:`FhirInvalid` if any resource does not conform.
    """

    data = bundle_dict(extraction, seed=seed)
    validate_r4(data)
    return data


def _local_references(value: Any, types: dict[str, str]) -> Any:
    if isinstance(value, dict):
        out = {k: _local_references(v, types) for k, v in value.items()}
        ref = out.get("reference")
        if isinstance(ref, str) and ref.startswith("urn:uuid:") and ref[9:] in types:
            out["reference"] = f"{types[ref[9:]]}/{ref[9:]}"
        return out
    if isinstance(value, list):
        return [_local_references(v, types) for v in value]
    return value


def to_ndjson(bundles: Iterable[dict[str, Any]]) -> dict[str, list[str]]:
    """FHIR Bulk Data style export: resource type -> lines, one resource (compact JSON) per line.

    References inside a bundle (``urn:uuid:<id>``) become ``<Type>/<id>``, as between the files of a
    bulk export; a resource that appears in several bundles (the same id) is written once.
    """

    out: dict[str, list[str]] = {}
    seen: set[tuple[str, str]] = set()
    for bundle in bundles:
        resources = [e["resource"] for e in bundle.get("entry", [])]
        types = {r["id"]: r["resourceType"] for r in resources}
        for resource in resources:
            key = (resource["resourceType"], resource["id"])
            if key in seen:
                continue
            seen.add(key)
            line = json.dumps(_local_references(resource, types), ensure_ascii=False, separators=(",", ":"))
            out.setdefault(resource["resourceType"], []).append(line)
    return out
