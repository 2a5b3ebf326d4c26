"""The deterministic summariser: sections built from the facts by rules, every statement citing them.

It needs no model, always works, and is the last fallback. The model-written parts of a summary (the
chronological narrative and the assessment) replace the template's versions when a model is available;
the other sections are always built here, because lists and numbers are best copied, not generated.
"""

from __future__ import annotations

import re
from collections import OrderedDict, defaultdict
from datetime import date

from .concepts import BY_KEY
from .facts import Fact, FactKind, PatientRecord, fmt_number
from .output import GuidelineCheck, Section, Statement, Trend

RESOLVED = {"resolved", "inactive", "remission", "entered-in-error", "refuted"}
MED_CURRENT = {"active", "on-hold", "draft", "recorded", "mentioned", None}
MAX_ITEMS_PER_VISIT = 8
STABLE_FRACTION = 0.02

SECTION_TITLES = OrderedDict(
    overview="Patient overview",
    active_problems="Active problems",
    medications="Medications",
    allergies="Allergies",
    vitals_labs="Recent vitals and labs",
    narrative="Chronological narrative",
    assessment="Assessment",
    guideline_checks="Guideline checks",
)


def _key(label: str) -> str:
    label = re.sub(r"\s*\((disorder|finding|procedure|situation)\)\s*$", "", label.strip(), flags=re.I)
    return label.lower()


def _clean(label: str) -> str:
    return re.sub(r"\s*\((disorder|finding|procedure|situation)\)\s*$", "", label.strip(), flags=re.I)


def age_on(birth: date, on: date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


# --- overview --------------------------------------------------------------------------------------


def overview(record: PatientRecord, *, deidentify: bool, as_of: date) -> tuple[dict[str, object], list[Statement]]:
    demo = record.demographics
    data: dict[str, object] = {"deidentified": deidentify, "gender": demo.gender}
    if demo.birth_date:
        age = age_on(demo.birth_date, demo.deceased or as_of)
        data["age"] = "90 or older" if deidentify and age >= 90 else age
    if not deidentify:
        data.update(name=demo.name, birth_date=demo.birth_date.isoformat() if demo.birth_date else None,
                    mrn=demo.mrn, patient_id=demo.patient_id, address=demo.address)
    encounters = record.of_kind(FactKind.encounter)
    first, last = record.first_date, record.last_date
    data.update(
        record_start=first.isoformat() if first else None,
        record_end=last.isoformat() if last else None,
        encounters=len(encounters),
        as_of=as_of.isoformat(),
    )
    parts = []
    who = []
    if not deidentify and demo.name:
        who.append(demo.name)
    if "age" in data:
        who.append(f"{data['age']} years old" if isinstance(data["age"], int) else str(data["age"]))
    if demo.gender:
        who.append(demo.gender)
    if who:
        parts.append("Patient: " + ", ".join(who) + ".")
    if not deidentify and demo.mrn:
        parts.append(f"MRN {demo.mrn}.")
    statements = [Statement(text=" ".join(parts), citations=[])] if parts else []
    if first and last:
        cites = [encounters[0].id, encounters[-1].id] if encounters else []
        statements.append(
            Statement(
                text=f"The record covers {first.isoformat()} to {last.isoformat()} with {len(encounters)} encounter(s).",
                citations=cites,
            )
        )
    return data, statements


# --- lists -------------------------------------------------------------------------------------------


def _structured(facts: list[Fact]) -> list[Fact]:
    structured = [f for f in facts if f.status != "mentioned"]
    return structured or facts


def active_problems(record: PatientRecord) -> list[Statement]:
    groups: dict[str, list[Fact]] = defaultdict(list)
    for f in _structured(record.of_kind(FactKind.condition)):
        groups[_key(f.label)].append(f)
    out = []
    for facts in groups.values():
        facts.sort(key=lambda f: f.date or date.min)
        latest = facts[-1]
        if latest.status in RESOLVED or latest.end_date is not None:
            continue
        since = facts[0].date
        text = _clean(latest.label)
        if since:
            text += f", since {since.isoformat()}"
        if latest.status and latest.status not in {"recorded", "mentioned"}:
            text += f" ({latest.status})"
        out.append(Statement(text=text, citations=[f.id for f in facts][-5:]))
    return out


def medications(record: PatientRecord, *, max_past: int = 10) -> list[Statement]:
    groups: dict[str, list[Fact]] = defaultdict(list)
    for f in _structured(record.of_kind(FactKind.medication)):
        groups[f.label.lower()].append(f)
    current, past = [], []
    for facts in groups.values():
        facts.sort(key=lambda f: f.date or date.min)
        latest = facts[-1]
        text = latest.label
        if latest.status in MED_CURRENT:
            since = facts[0].date
            text += f": {latest.status or 'current'}" + (f", since {since.isoformat()}" if since else "")
            if latest.detail and latest.status != "mentioned":
                text += f"; {latest.detail}"
            current.append((latest.date or date.min, Statement(text=text, citations=[f.id for f in facts][-5:])))
        else:
            when = latest.date.isoformat() if latest.date else "undated"
            text += f": {latest.status}, last ordered {when}" + (f" ({len(facts)} orders)" if len(facts) > 1 else "")
            past.append((latest.date or date.min, Statement(text=text, citations=[latest.id])))
    current.sort(key=lambda x: x[0])
    past.sort(key=lambda x: x[0], reverse=True)
    return [s for _, s in current] + [s for _, s in past[:max_past]]


def allergies(record: PatientRecord) -> list[Statement]:
    out = []
    for f in record.of_kind(FactKind.allergy):
        text = _clean(f.label) + (f" ({f.status})" if f.status else "") + (f"; {f.detail}" if f.detail else "")
        out.append(Statement(text=text, citations=[f.id]))
    if not out:
        out.append(Statement(text="No allergies recorded.", citations=[]))
    return out


# --- trends -----------------------------------------------------------------------------------------


def trends(record: PatientRecord, *, recent_points: int = 5) -> list[Trend]:
    series: dict[str, list[Fact]] = defaultdict(list)
    for f in record.of_kind(FactKind.observation):
        if f.concept and f.value is not None and f.date:
            series[f.concept].append(f)
    for concept, facts in series.items():  # values read from notes only where nothing structured exists
        structured = [f for f in facts if f.source.span is None]
        series[concept] = structured or facts
    out = []
    order = list(BY_KEY)
    for concept in sorted(series, key=order.index):
        facts = sorted(series[concept], key=lambda f: f.date or date.min)
        recent = facts[-recent_points:]
        latest = recent[-1]
        assert latest.value is not None and latest.date is not None
        previous = recent[-2] if len(recent) > 1 else None
        if previous is None or previous.value is None:
            direction, change = "single", None
        else:
            change = round(latest.value - previous.value, 4)
            scale = max(abs(previous.value), 1e-9)
            direction = "stable" if abs(change) <= STABLE_FRACTION * scale else "rising" if change > 0 else "falling"
        spec = BY_KEY[concept]
        out.append(
            Trend(
                concept=concept, title=spec.title, category=spec.category, unit=latest.unit or spec.unit,
                points=[(f.date.isoformat(), f.value) for f in recent if f.date and f.value is not None],
                latest=latest.value, latest_date=latest.date.isoformat(),
                previous=previous.value if previous else None, change=change,
                direction=direction,  # type: ignore[arg-type]
                citations=[f.id for f in recent],
            )
        )
    return out


def trend_statements(items: list[Trend]) -> list[Statement]:
    out = []
    for t in items:
        unit = f" {t.unit}" if t.unit else ""
        text = f"{t.title}: {fmt_number(t.latest)}{unit} on {t.latest_date}"
        if t.previous is not None and len(t.points) > 1:
            prev_date = t.points[-2][0]
            text += f", {t.direction} from {fmt_number(t.previous)}{unit} on {prev_date}"
            if len(t.points) > 2:
                text += f" (first of the last {len(t.points)}: {fmt_number(t.points[0][1])}{unit} on {t.points[0][0]})"
        out.append(Statement(text=text + ".", citations=t.citations))
    return out


# --- narrative and assessment --------------------------------------------------------------------------


def visits(record: PatientRecord) -> list[tuple[date | None, Fact | None, list[Fact]]]:
    """Facts grouped by encounter (or by date when they have none), in chronological order."""
    by_enc: dict[str, list[Fact]] = defaultdict(list)
    loose: dict[date | None, list[Fact]] = defaultdict(list)
    encounters = {f.id: f for f in record.of_kind(FactKind.encounter)}
    for f in record.facts:
        if f.kind is FactKind.encounter:
            continue
        if f.encounter and f.encounter in encounters:
            by_enc[f.encounter].append(f)
        else:
            loose[f.date].append(f)
    groups: list[tuple[date | None, Fact | None, list[Fact]]] = []
    for enc in encounters.values():
        groups.append((enc.date, enc, by_enc.get(enc.id, [])))
    for day, facts in loose.items():
        if any(f.kind is not FactKind.allergy for f in facts):
            groups.append((day, None, [f for f in facts if f.kind is not FactKind.allergy]))
    groups.sort(key=lambda g: (g[0] is None, g[0] or date.min))
    return groups


def _item(f: Fact) -> str:
    if f.kind is FactKind.condition:
        return ("noted " if f.status == "mentioned" else "diagnosed ") + _clean(f.label)
    if f.kind is FactKind.medication:
        return ("mentioned " if f.status == "mentioned" else "prescribed ") + f.label
    if f.kind is FactKind.procedure:
        return "procedure " + _clean(f.label)
    if f.kind is FactKind.observation:
        spec = BY_KEY.get(f.concept or "")
        name = spec.title if spec else f.label
        if f.value is not None:
            return f"{name} {fmt_number(f.value)}" + (f" {f.unit}" if f.unit else "")
        return f"{name} {f.value_text}" if f.value_text else name
    if f.kind is FactKind.note:
        return f"{f.label.lower()} on file"
    return f.label


def visit_statement(day: date | None, enc: Fact | None, facts: list[Fact]) -> Statement:
    when = day.isoformat() if day else "Undated"
    head = _clean(enc.label) if enc else "Records"
    if enc and enc.detail:
        head += f" ({enc.detail})"
    ranked = sorted(
        facts,
        key=lambda f: [FactKind.condition, FactKind.medication, FactKind.procedure, FactKind.observation,
                       FactKind.note].index(f.kind) if f.kind in (FactKind.condition, FactKind.medication,
                                                                   FactKind.procedure, FactKind.observation,
                                                                   FactKind.note) else 9,
    )
    # Note-derived mentions repeat the structured facts of the same visit: list them only when alone.
    structured = [f for f in ranked if f.status != "mentioned" and not (f.source.span and f.kind is not FactKind.note)]
    shown = (structured or ranked)[:MAX_ITEMS_PER_VISIT]
    items = [_item(f) for f in shown]
    extra = len(structured or ranked) - len(shown)
    text = f"{when}: {head}"
    if items:
        text += ": " + "; ".join(items)
    if extra > 0:
        text += f"; and {extra} more item(s)"
    cites = ([enc.id] if enc else []) + [f.id for f in shown]
    return Statement(text=text + ".", citations=cites)


def narrative(record: PatientRecord) -> list[Statement]:
    return [visit_statement(day, enc, facts) for day, enc, facts in visits(record)]


def assessment(
    record: PatientRecord, problems: list[Statement], trend_items: list[Trend], checks: list[GuidelineCheck]
) -> list[Statement]:
    out = []
    if problems:
        names = [p.text.split(",")[0] for p in problems]
        out.append(Statement(text="Active problems: " + "; ".join(names) + ".",
                             citations=[c for p in problems for c in p.citations[-1:]]))
    else:
        out.append(Statement(text="No active problems recorded.", citations=[]))
    for t in trend_items:
        if t.direction in {"rising", "falling"} and t.concept in {
            "hba1c", "systolic_bp", "diastolic_bp", "creatinine", "egfr", "ldl", "weight", "glucose",
        } and t.previous is not None:
            unit = f" {t.unit}" if t.unit else ""
            out.append(Statement(
                text=f"{t.title} is {t.direction}: {fmt_number(t.previous)}{unit} to {fmt_number(t.latest)}{unit} "
                f"(latest {t.latest_date}).",
                citations=t.citations[-2:],
            ))
    unmet = [c for c in checks if c.status == "not_met"]
    if unmet:
        for c in unmet:
            out.append(Statement(text=f"Guideline gap: {c.title}: {c.detail}", citations=c.citations))
    elif checks:
        out.append(Statement(text=f"All {len(checks)} applicable guideline checks are met.",
                             citations=[c for ch in checks for c in ch.citations[:1]]))
    return out


def guideline_statements(checks: list[GuidelineCheck]) -> list[Statement]:
    label = {"met": "met", "not_met": "NOT MET", "not_applicable": "not applicable"}
    return [Statement(text=f"{c.title}: {label[c.status]}. {c.detail}", citations=c.citations) for c in checks]


def build_sections(
    record: PatientRecord, *, deidentify: bool, as_of: date, checks: list[GuidelineCheck], recent_points: int = 5
) -> tuple[dict[str, object], dict[str, Section], list[Trend]]:
    data, over = overview(record, deidentify=deidentify, as_of=as_of)
    problems = active_problems(record)
    trend_items = trends(record, recent_points=recent_points)
    sections = {
        "overview": over,
        "active_problems": problems or [Statement(text="No active problems recorded.", citations=[])],
        "medications": medications(record) or [Statement(text="No medications recorded.", citations=[])],
        "allergies": allergies(record),
        "vitals_labs": trend_statements(trend_items) or [Statement(text="No vitals or labs recorded.", citations=[])],
        "narrative": narrative(record),
        "assessment": assessment(record, problems, trend_items, checks),
        "guideline_checks": guideline_statements(checks)
        or [Statement(text="No guideline rule applies to this record.", citations=[])],
    }
    return data, {k: Section(key=k, title=SECTION_TITLES[k], statements=v) for k, v in sections.items()}, trend_items
