"""A small, documented rule set of guideline checks evaluated on the facts.

Each rule applies when the record has an active (or recorded) condition of its concept, and is judged
at the record's *as-of* date (the latest dated fact, unless given). The rules are screening aids drawn
from widely published recommendations, not clinical advice:

===============================  ====================================================================
rule                             check
===============================  ====================================================================
``diabetes.hba1c_monitoring``    diabetes: an HbA1c result within the last 6 months (ADA Standards of
                                 Care: at least twice a year when at goal, quarterly otherwise)
``diabetes.hba1c_control``       diabetes: the latest HbA1c is below 7.0 % (ADA general adult target)
``diabetes.kidney_monitoring``   diabetes: creatinine/eGFR or urine albumin-creatinine ratio within
                                 the last 12 months (ADA/KDIGO annual kidney screening)
``diabetes.lipid_monitoring``    diabetes: a lipid result (total, LDL or HDL cholesterol, triglycerides)
                                 within the last 12 months
``hypertension.bp_monitoring``   hypertension: a blood pressure reading within the last 12 months
``hypertension.bp_control``      hypertension: the latest reading is below 140/90 mmHg (JNC 8 / NICE
                                 clinic target for adults under 80)
``allergy.medication_conflict``  any: no active medication shares a drug name with a recorded allergy
===============================  ====================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

from .facts import Fact, FactKind, PatientRecord, fmt_number
from .mentions import DrugDictionary
from .output import GuidelineCheck

ACTIVE_STATUSES = {"active", "recurrence", "relapse", "recorded", "mentioned", None}


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    applies_to: str | None  # condition concept, or None for every record
    reference: str
    check: Callable[[PatientRecord, list[Fact], date, DrugDictionary], GuidelineCheck]


def _conditions(record: PatientRecord, concept: str) -> list[Fact]:
    return [
        f for f in record.of_kind(FactKind.condition)
        if f.concept == concept and f.status in ACTIVE_STATUSES
    ]


def _latest(record: PatientRecord, concepts: tuple[str, ...]) -> list[Fact]:
    obs = [f for f in record.of_kind(FactKind.observation) if f.concept in concepts and f.value is not None and f.date]
    obs = [f for f in obs if f.source.span is None] or obs  # structured values first
    return sorted(obs, key=lambda f: f.date or date.min, reverse=True)


def _within(facts: list[Fact], as_of: date, days: int) -> list[Fact]:
    return [f for f in facts if f.date and as_of - timedelta(days=days) <= f.date <= as_of]


def _monitoring(concepts: tuple[str, ...], days: int, what: str, rule_id: str, title: str, reference: str) -> Rule:
    def check(record: PatientRecord, conds: list[Fact], as_of: date, _d: DrugDictionary) -> GuidelineCheck:
        results = _latest(record, concepts)
        recent = _within(results, as_of, days)
        cites = [conds[0].id]
        if recent:
            f = recent[0]
            return GuidelineCheck(
                rule=rule_id, title=title, status="met", reference=reference,
                detail=f"{what} recorded on {f.date} (within {days} days of {as_of}).", citations=[*cites, f.id],
            )
        if results:
            f = results[0]
            return GuidelineCheck(
                rule=rule_id, title=title, status="not_met", reference=reference,
                detail=f"last {what} on {f.date}, more than {days} days before {as_of}.", citations=[*cites, f.id],
            )
        return GuidelineCheck(
            rule=rule_id, title=title, status="not_met", reference=reference,
            detail=f"no {what} in the record.", citations=cites,
        )

    return Rule(rule_id, title, None, reference, check)


def _hba1c_control(record: PatientRecord, conds: list[Fact], as_of: date, _d: DrugDictionary) -> GuidelineCheck:
    rule, title, ref = "diabetes.hba1c_control", "HbA1c below 7.0 % in diabetes", "ADA Standards of Care, glycemic goals"
    results = _latest(record, ("hba1c",))
    if not results:
        return GuidelineCheck(rule=rule, title=title, status="not_applicable", reference=ref,
                              detail="no HbA1c result in the record.", citations=[conds[0].id])
    f = results[0]
    assert f.value is not None
    ok = f.value < 7.0
    return GuidelineCheck(
        rule=rule, title=title, status="met" if ok else "not_met", reference=ref,
        detail=f"latest HbA1c {fmt_number(f.value)} % on {f.date} is {'below' if ok else 'at or above'} 7.0 %.",
        citations=[conds[0].id, f.id],
    )


def _bp_control(record: PatientRecord, conds: list[Fact], as_of: date, _d: DrugDictionary) -> GuidelineCheck:
    rule, title, ref = "hypertension.bp_control", "Blood pressure below 140/90 mmHg", "JNC 8 (2014); NICE NG136"
    sys_ = _latest(record, ("systolic_bp",))
    if not sys_:
        return GuidelineCheck(rule=rule, title=title, status="not_applicable", reference=ref,
                              detail="no blood pressure reading in the record.", citations=[conds[0].id])
    s = sys_[0]
    dia = [f for f in _latest(record, ("diastolic_bp",)) if f.date == s.date]
    d = dia[0] if dia else None
    assert s.value is not None
    ok = s.value < 140 and (d is None or (d.value is not None and d.value < 90))
    reading = fmt_number(s.value) + (f"/{fmt_number(d.value)}" if d is not None and d.value is not None else "")
    return GuidelineCheck(
        rule=rule, title=title, status="met" if ok else "not_met", reference=ref,
        detail=f"latest blood pressure {reading} mmHg on {s.date} is {'below' if ok else 'not below'} 140/90 mmHg.",
        citations=[conds[0].id, s.id, *([d.id] if d else [])],
    )


def _allergy_conflict(record: PatientRecord, _c: list[Fact], as_of: date, drugs: DrugDictionary) -> GuidelineCheck:
    rule, title, ref = "allergy.medication_conflict", "No active medication matches a recorded allergy", \
        "Medication safety (allergy cross-check)"
    allergies = [a for a in record.of_kind(FactKind.allergy) if a.status in {"active", None}]
    meds = record.of_kind(FactKind.medication)
    meds = [m for m in meds if m.status != "mentioned"] or meds
    active = [m for m in meds if m.status in {"active", "recorded", "mentioned"}]
    if not allergies:
        return GuidelineCheck(rule=rule, title=title, status="not_applicable", reference=ref,
                              detail="no allergies recorded.")
    for allergy in allergies:
        allergens = drugs.generic(allergy.label) | {w.lower() for w in allergy.label.split() if len(w) > 5}
        for med in active:
            names = drugs.generic(med.label)
            shared = names & allergens
            if shared:
                return GuidelineCheck(
                    rule=rule, title=title, status="not_met", reference=ref,
                    detail=f"active medication {med.label} matches the recorded allergy {allergy.label}.",
                    citations=[allergy.id, med.id],
                )
    return GuidelineCheck(
        rule=rule, title=title, status="met", reference=ref,
        detail=f"{len(active)} active medication(s) checked against {len(allergies)} allergy record(s).",
        citations=[a.id for a in allergies],
    )


RULES: tuple[Rule, ...] = (
    Rule("diabetes.hba1c_monitoring", "HbA1c measured in the last 6 months", "diabetes",
         "ADA Standards of Care, glycemic assessment",
         _monitoring(("hba1c",), 183, "HbA1c", "diabetes.hba1c_monitoring", "HbA1c measured in the last 6 months",
                     "ADA Standards of Care, glycemic assessment").check),
    Rule("diabetes.hba1c_control", "HbA1c below 7.0 % in diabetes", "diabetes", "ADA", _hba1c_control),
    Rule("diabetes.kidney_monitoring", "Kidney function checked in the last 12 months", "diabetes", "ADA/KDIGO",
         _monitoring(("creatinine", "egfr", "uacr"), 365, "kidney function test", "diabetes.kidney_monitoring",
                     "Kidney function checked in the last 12 months", "ADA Standards of Care; KDIGO 2022").check),
    Rule("diabetes.lipid_monitoring", "Lipids checked in the last 12 months", "diabetes", "ADA",
         _monitoring(("cholesterol", "ldl", "hdl", "triglycerides"), 365, "lipid result", "diabetes.lipid_monitoring",
                     "Lipids checked in the last 12 months", "ADA Standards of Care, lipid management").check),
    Rule("hypertension.bp_monitoring", "Blood pressure recorded in the last 12 months", "hypertension", "JNC 8",
         _monitoring(("systolic_bp",), 365, "blood pressure reading", "hypertension.bp_monitoring",
                     "Blood pressure recorded in the last 12 months", "JNC 8 (2014); NICE NG136").check),
    Rule("hypertension.bp_control", "Blood pressure below 140/90 mmHg", "hypertension", "JNC 8", _bp_control),
    Rule("allergy.medication_conflict", "No active medication matches a recorded allergy", None, "safety",
         _allergy_conflict),
)


def evaluate(record: PatientRecord, drugs: DrugDictionary, as_of: date | None = None) -> list[GuidelineCheck]:
    """Every rule that applies to the record, in rule order."""
    as_of = as_of or record.last_date or date.today()
    out = []
    for rule in RULES:
        conds = _conditions(record, rule.applies_to) if rule.applies_to else []
        if rule.applies_to and not conds:
            continue
        out.append(rule.check(record, conds, as_of, drugs))
    return out
