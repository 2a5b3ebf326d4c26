"""Every accepted input shape into a :class:`PatientRecord`.

Shapes (detected from the JSON):

* **FHIR R4 Bundle**: ``{"resourceType": "Bundle", ...}`` (see :mod:`.fhir_bundle`).
* **Patient data model** (the architecture document's): ``{"patient_id", "demographics": {...},
  "visits": [{"visit_id", "date", "chief_complaint", "diagnoses", "medications", "procedures",
  "vitals": {...}, "labs": [...]}]}``.
* **Free-text notes**: ``["note", ...]``, ``{"notes": ["note" | {"text", "date", "title"}, ...]}``.
* **Processed documents** (upload pipeline results): ``{"documents": [{"document_id", "text" |
  "scrubbed_text", "medical_data": {...}, "fhir": Bundle?}, ...]}``.

Malformed input raises :class:`~ai_med_extract.errors.Unprocessable` with a JSON path in ``details``;
values from the record never appear in the error.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

from ai_med_extract.errors import Unprocessable

from .concepts import condition_concept, measurement_for
from .facts import FactKind, InputKind, PatientRecord, SourceRef
from .fhir_bundle import parse_bundle
from .text_facts import add_note

MAX_NOTES = 10_000


def _bad(message: str, loc: str, kind: str, code: str = "RECORD_INVALID") -> Unprocessable:
    return Unprocessable(message, code=code, details={"errors": [{"loc": loc, "type": kind}]})


def detect(payload: Any) -> InputKind:
    if isinstance(payload, list):
        return InputKind.notes
    if not isinstance(payload, dict):
        raise _bad("record must be a JSON object or a list of notes", "$", "type")
    if payload.get("resourceType") == "Bundle":
        return InputKind.fhir_bundle
    if "resourceType" in payload:
        raise _bad("only FHIR Bundles are accepted as FHIR input", "resourceType", "unsupported_resource")
    if "documents" in payload:
        return InputKind.documents
    if "notes" in payload:
        return InputKind.notes
    if "visits" in payload or "demographics" in payload:
        return InputKind.patient_model
    raise _bad(
        "unrecognised record shape: expected a FHIR Bundle, the patient data model, notes or documents",
        "$",
        "unknown_shape",
    )


def load_record(payload: Any) -> PatientRecord:
    """Normalise ``payload`` (any accepted shape) into facts. Blocking: run it off the event loop."""
    kind = detect(payload)
    if kind is InputKind.fhir_bundle:
        return parse_bundle(payload)
    if kind is InputKind.patient_model:
        return parse_patient_model(payload)
    if kind is InputKind.notes:
        return parse_notes(payload if isinstance(payload, list) else payload["notes"], payload)
    return parse_documents(payload["documents"])


# --- helpers ------------------------------------------------------------------------------------------


def _date(value: Any, loc: str) -> date | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _bad("dates must be ISO 8601 strings", loc, "date_type")
    try:
        if len(value) == 4 and value.isdigit():
            return date(int(value), 1, 1)
        if len(value) == 7:
            return date(int(value[:4]), int(value[5:7]), 1)
        return datetime.fromisoformat(value.replace("Z", "+00:00")).date() if "T" in value else date.fromisoformat(
            value[:10]
        )
    except ValueError:
        raise _bad("unparseable date", loc, "date_parsing") from None


def _text(value: Any, loc: str) -> str:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise _bad("expected a string", loc, "string_type")


def _list(value: Any, loc: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _bad("expected a list", loc, "list_type")
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        m = re.match(r"\s*([-+]?\d+(?:\.\d+)?)", value)
        return float(m.group(1)) if m else None
    return None


# --- patient data model -------------------------------------------------------------------------------


def parse_patient_model(payload: dict[str, Any]) -> PatientRecord:
    record = PatientRecord(kind=InputKind.patient_model)
    demo = payload.get("demographics") or {}
    if not isinstance(demo, dict):
        raise _bad("demographics must be an object", "demographics", "dict_type")
    d = record.demographics
    d.patient_id = _text(payload["patient_id"], "patient_id") if payload.get("patient_id") is not None else None
    d.name = _text(demo["name"], "demographics.name") if demo.get("name") else None
    d.birth_date = _date(demo.get("dob"), "demographics.dob")
    d.gender = _text(demo["gender"], "demographics.gender") if demo.get("gender") else None
    d.mrn = _text(demo["mrn"], "demographics.mrn") if demo.get("mrn") else None
    for key in payload:
        if key not in {"patient_id", "demographics", "visits"}:
            record.ignored[f"field {key}"] += 1
    for vi, visit in enumerate(_list(payload.get("visits"), "visits")):
        loc = f"visits[{vi}]"
        if not isinstance(visit, dict):
            raise _bad("each visit must be an object", loc, "dict_type")
        when = _date(visit.get("date"), f"{loc}.date")
        complaint = visit.get("chief_complaint")
        enc = record.add(
            FactKind.encounter,
            "Visit",
            SourceRef(loc),
            date=when,
            detail=f"chief complaint: {_text(complaint, f'{loc}.chief_complaint')}" if complaint else None,
        )
        record.resource_counts["visit"] += 1
        for i, dx in enumerate(_list(visit.get("diagnoses"), f"{loc}.diagnoses")):
            label = _text(dx if not isinstance(dx, dict) else dx.get("name", ""), f"{loc}.diagnoses[{i}]")
            status = dx.get("status") if isinstance(dx, dict) else None
            record.add(
                FactKind.condition, label, SourceRef(f"{loc}.diagnoses[{i}]"), date=when,
                status=status or "recorded", concept=condition_concept(label), encounter=enc.id,
            )
        for i, med in enumerate(_list(visit.get("medications"), f"{loc}.medications")):
            label = _text(med if not isinstance(med, dict) else med.get("name", ""), f"{loc}.medications[{i}]")
            status = med.get("status") if isinstance(med, dict) else None
            record.add(
                FactKind.medication, label, SourceRef(f"{loc}.medications[{i}]"), date=when,
                status=status or "recorded", encounter=enc.id,
            )
        for i, proc in enumerate(_list(visit.get("procedures"), f"{loc}.procedures")):
            label = _text(proc if not isinstance(proc, dict) else proc.get("name", ""), f"{loc}.procedures[{i}]")
            record.add(FactKind.procedure, label, SourceRef(f"{loc}.procedures[{i}]"), date=when, encounter=enc.id)
        vitals = visit.get("vitals") or {}
        if not isinstance(vitals, dict):
            raise _bad("vitals must be an object", f"{loc}.vitals", "dict_type")
        for name, value in vitals.items():
            _add_vital(record, str(name), value, f"{loc}.vitals.{name}", when, enc.id)
        for i, lab in enumerate(_list(visit.get("labs"), f"{loc}.labs")):
            _add_lab(record, lab, f"{loc}.labs[{i}]", when, enc.id)
        for key in visit:
            if key not in {"visit_id", "date", "chief_complaint", "diagnoses", "medications", "procedures",
                           "vitals", "labs"}:
                record.ignored[f"visit field {key}"] += 1
    return record


def _add_vital(record: PatientRecord, name: str, value: Any, loc: str, when: date | None, enc: str) -> None:
    lower = name.lower().replace("_", " ")
    if lower in {"bp", "blood pressure"} and isinstance(value, str) and "/" in value:
        parts = value.split("/")
        sys_v, dia_v = _number(parts[0]), _number(parts[1])
        if sys_v is None or dia_v is None:
            raise _bad("blood pressure must look like 120/80", loc, "bp_format")
        for key, v in (("systolic_bp", sys_v), ("diastolic_bp", dia_v)):
            meas = measurement_for(name=key)
            assert meas is not None
            record.add(
                FactKind.observation, meas.title, SourceRef(loc), date=when, concept=key, category="vital-signs",
                value=v, unit="mmHg", encounter=enc,
            )
        return
    meas = measurement_for(name=lower)
    number = _number(value) if not isinstance(value, dict) else _number(value.get("value"))
    unit = value.get("unit") if isinstance(value, dict) else None
    if number is None:
        record.add(
            FactKind.observation, name, SourceRef(loc), date=when, category="vital-signs",
            value_text=_text(value, loc)[:200], encounter=enc,
        )
        return
    record.add(
        FactKind.observation, meas.title if meas else name, SourceRef(loc), date=when,
        concept=meas.key if meas else None, category="vital-signs", value=number,
        unit=unit or (meas.unit if meas else None), encounter=enc,
    )


def _add_lab(record: PatientRecord, lab: Any, loc: str, when: date | None, enc: str) -> None:
    value: float | None
    if isinstance(lab, str):
        m = re.match(r"\s*(.+?)\s*[:=]?\s*([-+]?\d+(?:\.\d+)?)\s*(\S+)?\s*$", lab)
        if not m:
            record.add(FactKind.observation, lab[:200], SourceRef(loc), date=when, category="laboratory", encounter=enc)
            return
        name, value, unit = m.group(1), float(m.group(2)), m.group(3)
        lab_when = when
    elif isinstance(lab, dict):
        name = _text(lab.get("name") or lab.get("test") or "", f"{loc}.name")
        if not name:
            raise _bad("each lab needs a name", f"{loc}.name", "missing")
        value_raw = lab.get("value")
        value = _number(value_raw)
        unit = lab.get("unit")
        lab_when = _date(lab.get("date"), f"{loc}.date") or when
        if value is None and value_raw is not None:
            record.add(
                FactKind.observation, name, SourceRef(loc), date=lab_when, category="laboratory",
                value_text=_text(value_raw, f"{loc}.value")[:200], encounter=enc,
            )
            return
    else:
        raise _bad("each lab must be an object or a string", loc, "lab_type")
    meas = measurement_for(name=name)
    record.add(
        FactKind.observation, meas.title if meas else name, SourceRef(loc), date=lab_when,
        concept=meas.key if meas else None, category="laboratory", value=value,
        unit=unit or (meas.unit if meas else None), encounter=enc,
    )


# --- notes and documents -----------------------------------------------------------------------------


def parse_notes(notes: Any, container: Any = None) -> PatientRecord:
    record = PatientRecord(kind=InputKind.notes)
    items = _list(notes, "notes")
    if not items:
        raise _bad("no notes given", "notes", "empty")
    if len(items) > MAX_NOTES:
        raise _bad(f"at most {MAX_NOTES} notes", "notes", "too_long")
    prefix = "notes" if isinstance(container, dict) else "$"
    for i, note in enumerate(items):
        loc = f"{prefix}[{i}]"
        if isinstance(note, str):
            text, when, title = note, None, "Clinical note"
        elif isinstance(note, dict):
            text = _text(note.get("text", ""), f"{loc}.text")
            when = _date(note.get("date"), f"{loc}.date")
            title = _text(note.get("title") or "Clinical note", f"{loc}.title")
        else:
            raise _bad("each note must be a string or an object with text", loc, "note_type")
        if not text.strip():
            record.ignored["empty note"] += 1
            continue
        record.resource_counts["note"] += 1
        add_note(record, text, SourceRef(loc), label=title, when=when)
    return record


def parse_documents(documents: Any) -> PatientRecord:
    """Results of the upload pipeline: a FHIR bundle inside a result is used, else its text."""
    record = PatientRecord(kind=InputKind.documents)
    items = _list(documents, "documents")
    if not items:
        raise _bad("no documents given", "documents", "empty")
    for i, doc in enumerate(items):
        loc = f"documents[{i}]"
        if not isinstance(doc, dict):
            raise _bad("each document must be an object", loc, "dict_type")
        record.resource_counts["document"] += 1
        bundle = doc.get("fhir") or (doc.get("medical_data") or {}).get("fhir")
        if isinstance(bundle, dict) and bundle.get("resourceType") == "Bundle":
            sub = parse_bundle(bundle)
            _merge(record, sub, loc)
            continue
        text = doc.get("scrubbed_text") or doc.get("text") or doc.get("deidentified_text")
        if not isinstance(text, str) or not text.strip():
            record.ignored["document without text"] += 1
            continue
        when = _date(doc.get("date"), f"{loc}.date") if doc.get("date") else None
        title = str(doc["title"]) if isinstance(doc.get("title"), str) else "Processed document"
        add_note(record, text, SourceRef(loc), label=title, when=when)
    return record


def _merge(record: PatientRecord, sub: PatientRecord, loc: str) -> None:
    """Append ``sub``'s facts to ``record`` with fresh ids and paths prefixed by ``loc``."""
    renamed: dict[str, str] = {}
    for fact in sub.facts:
        new = record.add(
            fact.kind, fact.label, SourceRef(f"{loc}.fhir:{fact.source.path}", fact.source.span),
            date=fact.date, end_date=fact.end_date, status=fact.status, code=fact.code, concept=fact.concept,
            category=fact.category, value=fact.value, value_text=fact.value_text, unit=fact.unit,
            encounter=renamed.get(fact.encounter or ""), detail=fact.detail,
        )
        renamed[fact.id] = new.id
    record.ignored.update(sub.ignored)
    record.resource_counts.update(sub.resource_counts)
    if record.demographics.patient_id is None and sub.demographics.patient_id is not None:
        record.demographics = sub.demographics
