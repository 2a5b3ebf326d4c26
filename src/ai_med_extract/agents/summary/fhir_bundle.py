"""FHIR R4 Bundles (EHR exports, Synthea) into facts, parsed with ``fhir.resources``.

Each entry's resource is validated with its own ``fhir.resources`` model (the R4B package, which reads
R4 content for the resource types used here). Resource types the summariser does not use are not
validated: they are ignored and counted. A resource that fails validation makes the whole bundle a
``422`` whose details list *where* (``entry[12].resource(Observation).valueQuantity.value``) and the
error type, never the offending value.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

from pydantic import ValidationError

from ai_med_extract.errors import Unprocessable

from .concepts import BP_PANEL_LOINC, condition_concept, measurement_for
from .facts import FactKind, InputKind, PatientRecord, SourceRef

USED_TYPES = (
    "Patient",
    "Encounter",
    "Medication",  # before the requests and statements that reference it
    "Condition",
    "MedicationRequest",
    "MedicationStatement",
    "Observation",
    "Procedure",
    "AllergyIntolerance",
    "DiagnosticReport",
    "DocumentReference",
)
MAX_ERRORS_REPORTED = 20
MAX_NOTE_CHARS = 20_000


def _models() -> dict[str, Any]:
    from fhir.resources.R4B import get_fhir_model_class

    return {name: get_fhir_model_class(name) for name in USED_TYPES}


def _loc(index: int, rtype: str, loc: Iterable[Any]) -> str:
    path = f"entry[{index}].resource({rtype})"
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def parse_bundle(bundle: Any) -> PatientRecord:
    """Validate ``bundle`` and normalise it; raises :class:`Unprocessable` (``FHIR_INVALID``)."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise Unprocessable(
            "input is not a FHIR Bundle", code="FHIR_INVALID", details={"errors": [{"loc": "resourceType"}]}
        )
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        raise Unprocessable(
            "FHIR Bundle entry must be a list",
            code="FHIR_INVALID",
            details={"errors": [{"loc": "entry", "type": "list_type"}]},
        )
    models = _models()
    errors: list[dict[str, Any]] = []
    parsed: list[tuple[int, str, Any, str | None]] = []
    record = PatientRecord(kind=InputKind.fhir_bundle)
    for index, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        rtype = resource.get("resourceType") if isinstance(resource, dict) else None
        if not isinstance(rtype, str):
            errors.append({"loc": f"entry[{index}].resource.resourceType", "type": "missing"})
            continue
        record.resource_counts[rtype] += 1
        if rtype not in models:
            record.ignored[rtype] += 1
            continue
        try:
            model = models[rtype].model_validate(resource)
        except ValidationError as exc:
            for err in exc.errors(include_url=False, include_input=False, include_context=False):
                errors.append({"loc": _loc(index, rtype, err["loc"]), "type": err["type"]})
            continue
        full_url = entry.get("fullUrl") if isinstance(entry.get("fullUrl"), str) else None
        parsed.append((index, rtype, model, full_url))
    if errors:
        raise Unprocessable(
            f"FHIR Bundle has {len(errors)} validation error(s)",
            code="FHIR_INVALID",
            details={"errors": errors[:MAX_ERRORS_REPORTED], "error_count": len(errors)},
        )
    _Normaliser(record, parsed).run()
    return record


# --- helpers over fhir.resources models -----------------------------------------------------------


def _day(value: Any) -> date | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value)
    try:
        if len(text) == 4:
            return date(int(text), 1, 1)
        if len(text) == 7:
            return date(int(text[:4]), int(text[5:7]), 1)
        return date.fromisoformat(text[:10])
    except ValueError:
        return None


def _concept_text(cc: Any) -> str | None:
    if cc is None:
        return None
    if getattr(cc, "text", None):
        return str(cc.text)
    for coding in getattr(cc, "coding", None) or []:
        if coding.display:
            return str(coding.display)
    for coding in getattr(cc, "coding", None) or []:
        if coding.code:
            return str(coding.code)
    return None


def _codes(cc: Any) -> list[str]:
    out = []
    for coding in getattr(cc, "coding", None) or []:
        if coding.code:
            out.append(f"{coding.system or ''}|{coding.code}")
    return out


def _first_code(cc: Any, system_part: str | None = None) -> str | None:
    for coding in getattr(cc, "coding", None) or []:
        if coding.code and (system_part is None or system_part in (coding.system or "")):
            return str(coding.code)
    return None


def _status(cc: Any) -> str | None:
    return _first_code(cc) if cc is not None else None


def _ref(reference: Any) -> str | None:
    return str(reference.reference) if reference is not None and reference.reference else None


def _decode(attachment: Any) -> str | None:
    data = getattr(attachment, "data", None)
    if not data:
        return None
    if isinstance(data, bytes):  # fhir.resources decodes base64Binary already
        raw = data
    else:
        try:
            raw = base64.b64decode(str(data), validate=False)
        except (binascii.Error, ValueError):
            return None
    ctype = (attachment.contentType or "text/plain").lower()
    if not ctype.startswith("text/"):
        return None
    return raw.decode("utf-8", errors="replace")[:MAX_NOTE_CHARS]


class _Normaliser:
    def __init__(self, record: PatientRecord, parsed: list[tuple[int, str, Any, str | None]]):
        self.record = record
        self.parsed = parsed
        self.encounter_facts: dict[str, str] = {}  # reference key -> fact id
        self.medications: dict[str, Any] = {}  # reference key -> Medication model

    def _keys(self, rtype: str, model: Any, full_url: str | None) -> list[str]:
        keys = [f"{rtype}/{model.id}"] if model.id else []
        if full_url:
            keys.append(full_url)
        return keys

    def _src(self, index: int, rtype: str, model: Any) -> SourceRef:
        return SourceRef(f"{rtype}/{model.id}" if model.id else f"entry[{index}]")

    def _enc(self, model: Any) -> str | None:
        ref = _ref(getattr(model, "encounter", None) or getattr(model, "context", None))
        return self.encounter_facts.get(ref) if ref else None

    def run(self) -> None:
        order = {name: i for i, name in enumerate(USED_TYPES)}
        for index, rtype, model, full_url in sorted(self.parsed, key=lambda p: (order[p[1]], p[0])):
            getattr(self, f"_{rtype.lower()}")(index, model, full_url)

    def _patient(self, index: int, p: Any, full_url: str | None) -> None:
        demo = self.record.demographics
        if demo.patient_id is not None:
            self.record.ignored["Patient (additional)"] += 1
            return
        demo.patient_id = p.id
        if p.name:
            name = p.name[0]
            demo.name = name.text or " ".join([*(name.given or []), name.family or ""]).strip() or None
        demo.birth_date = _day(p.birthDate)
        demo.gender = p.gender
        demo.deceased = _day(p.deceasedDateTime)
        for ident in p.identifier or []:
            if _first_code(ident.type) == "MR" or "mrn" in (ident.system or "").lower():
                demo.mrn = ident.value
                break
        if p.address:
            addr = p.address[0]
            demo.address = ", ".join(x for x in [*(addr.line or []), addr.city, addr.state] if x) or None

    def _encounter(self, index: int, e: Any, full_url: str | None) -> None:
        kind = _concept_text(e.type[0]) if e.type else None
        cls = e.class_fhir.code if getattr(e, "class_fhir", None) else None
        label = kind or (f"{cls} encounter" if cls else "Encounter")
        reason = ", ".join(filter(None, (_concept_text(r) for r in e.reasonCode or []))) or None
        start = _day(e.period.start) if e.period else None
        end = _day(e.period.end) if e.period else None
        fact = self.record.add(
            FactKind.encounter,
            label,
            self._src(index, "Encounter", e),
            date=start,
            end_date=end,
            status=e.status,
            category=cls,
            code=next(iter(_codes(e.type[0])), None) if e.type else None,
            detail=f"reason: {reason}" if reason else None,
        )
        for key in self._keys("Encounter", e, full_url):
            self.encounter_facts[key] = fact.id

    def _condition(self, index: int, c: Any, full_url: str | None) -> None:
        label = _concept_text(c.code) or "Condition"
        codes = _codes(c.code)
        status = _status(c.clinicalStatus)
        if status is None and c.abatementDateTime is not None:
            status = "resolved"
        onset = _day(c.onsetDateTime) or (_day(c.onsetPeriod.start) if c.onsetPeriod else None) or _day(c.recordedDate)
        self.record.add(
            FactKind.condition,
            label,
            self._src(index, "Condition", c),
            date=onset,
            end_date=_day(c.abatementDateTime),
            status=status,
            code=codes[0] if codes else None,
            concept=condition_concept(label, codes),
            encounter=self._enc(c),
        )

    def _medication(self, index: int, m: Any, full_url: str | None) -> None:
        for key in self._keys("Medication", m, full_url):
            self.medications[key] = m

    def _medicationrequest(self, index: int, m: Any, full_url: str | None) -> None:
        cc = m.medicationCodeableConcept
        if cc is None and m.medicationReference is not None:
            med = self.medications.get(_ref(m.medicationReference) or "")
            cc = med.code if med is not None else None
        label = _concept_text(cc) or "Medication"
        dosage = None
        if m.dosageInstruction:
            dosage = m.dosageInstruction[0].text
        reason = ", ".join(filter(None, (_concept_text(r) for r in m.reasonCode or []))) or None
        detail = "; ".join(filter(None, [dosage, f"for {reason}" if reason else None])) or None
        codes = _codes(cc)
        self.record.add(
            FactKind.medication,
            label,
            self._src(index, "MedicationRequest", m),
            date=_day(m.authoredOn),
            status=m.status,
            code=codes[0] if codes else None,
            encounter=self._enc(m),
            detail=detail,
        )

    def _medicationstatement(self, index: int, m: Any, full_url: str | None) -> None:
        cc = m.medicationCodeableConcept
        if cc is None and m.medicationReference is not None:
            med = self.medications.get(_ref(m.medicationReference) or "")
            cc = med.code if med is not None else None
        when = _day(m.effectiveDateTime) or (_day(m.effectivePeriod.start) if m.effectivePeriod else None)
        codes = _codes(cc)
        self.record.add(
            FactKind.medication,
            _concept_text(cc) or "Medication",
            self._src(index, "MedicationStatement", m),
            date=when or _day(m.dateAsserted),
            status=m.status,
            code=codes[0] if codes else None,
            encounter=self._enc(m),
            detail=m.dosage[0].text if m.dosage else None,
        )

    def _observation(self, index: int, o: Any, full_url: str | None) -> None:
        src = self._src(index, "Observation", o)
        when = _day(o.effectiveDateTime) or (_day(o.effectivePeriod.start) if o.effectivePeriod else None)
        when = when or _day(o.issued)
        category = _first_code(o.category[0]) if o.category else None
        loinc = _first_code(o.code, "loinc")
        enc = self._enc(o)
        if o.component and (loinc in BP_PANEL_LOINC or o.valueQuantity is None):
            for i, comp in enumerate(o.component):
                self._measure(
                    comp, _first_code(comp.code, "loinc"), _concept_text(comp.code), when, category, enc,
                    SourceRef(f"{src.path}.component[{i}]"),
                )
            return
        self._measure(o, loinc, _concept_text(o.code), when, category, enc, src)

    def _measure(
        self, o: Any, loinc: str | None, name: str | None, when: date | None, category: str | None,
        enc: str | None, src: SourceRef,
    ) -> None:
        meas = measurement_for(loinc=loinc, name=name)
        value: float | None = None
        value_text: str | None = None
        unit: str | None = None
        if o.valueQuantity is not None and o.valueQuantity.value is not None:
            value = float(o.valueQuantity.value)
            unit = o.valueQuantity.unit or o.valueQuantity.code
        elif getattr(o, "valueCodeableConcept", None) is not None:
            value_text = _concept_text(o.valueCodeableConcept)
        elif getattr(o, "valueString", None):
            value_text = str(o.valueString)[:200]
        elif getattr(o, "valueInteger", None) is not None:
            value = float(o.valueInteger)
        self.record.add(
            FactKind.observation,
            name or (meas.title if meas else "Observation"),
            src,
            date=when,
            code=f"http://loinc.org|{loinc}" if loinc else None,
            concept=meas.key if meas else None,
            category=(meas.category if meas else category),
            value=value,
            value_text=value_text,
            unit=unit,
            encounter=enc,
        )

    def _procedure(self, index: int, p: Any, full_url: str | None) -> None:
        when = _day(p.performedDateTime) or (_day(p.performedPeriod.start) if p.performedPeriod else None)
        codes = _codes(p.code)
        self.record.add(
            FactKind.procedure,
            _concept_text(p.code) or "Procedure",
            self._src(index, "Procedure", p),
            date=when,
            status=p.status,
            code=codes[0] if codes else None,
            encounter=self._enc(p),
        )

    def _allergyintolerance(self, index: int, a: Any, full_url: str | None) -> None:
        reactions: list[str] = []
        for reaction in a.reaction or []:
            reactions.extend(filter(None, (_concept_text(m) for m in reaction.manifestation or [])))
        detail = "; ".join(
            filter(None, [f"reaction: {', '.join(reactions)}" if reactions else None,
                          f"criticality: {a.criticality}" if a.criticality else None])
        ) or None
        codes = _codes(a.code)
        self.record.add(
            FactKind.allergy,
            _concept_text(a.code) or "Allergy",
            self._src(index, "AllergyIntolerance", a),
            date=_day(a.recordedDate) or _day(a.onsetDateTime),
            status=_status(a.clinicalStatus) or "active",
            code=codes[0] if codes else None,
            category=(a.category or [None])[0],
            detail=detail,
        )

    def _note(self, label: str, text: str, when: date | None, src: SourceRef, enc: str | None) -> None:
        from .text_facts import add_note

        add_note(self.record, text, src, label=label, when=when, encounter=enc)

    def _diagnosticreport(self, index: int, r: Any, full_url: str | None) -> None:
        when = _day(r.effectiveDateTime) or (_day(r.effectivePeriod.start) if r.effectivePeriod else None)
        label = _concept_text(r.code) or "Diagnostic report"
        src = self._src(index, "DiagnosticReport", r)
        texts = [t for t in (_decode(a) for a in r.presentedForm or []) if t]
        if r.conclusion:
            texts.append(str(r.conclusion))
        if not texts:
            self.record.ignored["DiagnosticReport (no text)"] += 1
            return
        self._note(label, "\n".join(texts), when, src, self._enc(r))

    def _documentreference(self, index: int, d: Any, full_url: str | None) -> None:
        when = _day(d.date)
        if when is None and d.context is not None and d.context.period is not None:
            when = _day(d.context.period.start)
        label = _concept_text(d.type) or "Clinical note"
        texts = [t for t in (_decode(c.attachment) for c in d.content or []) if t]
        if not texts:
            self.record.ignored["DocumentReference (no text)"] += 1
            return
        enc = None
        if d.context is not None:
            for ref in d.context.encounter or []:
                enc = self.encounter_facts.get(_ref(ref) or "") or enc
        self._note(label, "\n".join(texts), when, self._src(index, "DocumentReference", d), enc)
