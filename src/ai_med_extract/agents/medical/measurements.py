"""Vital signs and lab results: regular expressions over the raw text, units normalised to UCUM."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from ai_med_extract.kit.dates import Precision, find_dates

_NUM = r"\d+(?:\.\d+)?"
_SEP = r"\s*(?:of|was|were|is|are|at|=|:|-)?\s*"

# kind -> (pattern, default UCUM unit); group "v" the value, "v2" diastolic, "u" the unit as written
_VITAL_PATTERNS: list[tuple[str, str]] = [
    (
        "blood_pressure",
        rf"\b(?:blood\s+pressure|b/?p|nibp|sbp/dbp)(?:\s+(?:sitting|standing|supine|left|right|arm))?{_SEP}"
        rf"(?P<v>\d{{2,3}})\s*/\s*(?P<v2>\d{{2,3}})(?:\s*(?P<u>mm\s*hg|mmhg))?",
    ),
    (
        "heart_rate",
        rf"\b(?:heart\s+rate|pulse(?:\s+rate)?|hr|p|pr|hrt\s+rate){_SEP}(?P<v>\d{{2,3}})"
        r"(?:\s*(?P<u>bpm|beats\s*(?:per|/)\s*min(?:ute)?|/min|b/min))?",
    ),
    (
        "respiratory_rate",
        rf"\b(?:respiratory\s+rate|resp(?:irations?)?(?:\s+rate)?|rr|r){_SEP}(?P<v>\d{{1,2}})"
        r"(?:\s*(?P<u>breaths\s*(?:per|/)\s*min(?:ute)?|/min|bpm|rpm))?",
    ),
    (
        "temperature",
        rf"\b(?:temperature|temp|tmax|t\s*max|tm|t){_SEP}(?P<v>\d{{2,3}}(?:\.\d{{1,2}})?)"
        r"(?:\s*(?P<u>°\s*[fc]|degrees?\s*(?:f|c|fahrenheit|celsius)|deg\s*[fc]|[fc])\b)?",
    ),
    (
        "spo2",
        rf"\b(?:spo2|sp02|sao2|o2\s*sat(?:uration)?s?|oxygen\s+saturation|pulse\s+ox(?:imetry)?|"
        rf"sat(?:uration)?s?|pox){_SEP}(?P<v>\d{{2,3}})\s*(?P<u>%)?",
    ),
    (
        "weight",
        rf"\b(?:weight|wt|weighs|body\s+weight){_SEP}(?P<v>\d{{2,3}}(?:\.\d+)?)\s*"
        r"(?P<u>kgs?|kilograms?|lbs?|pounds?|#)",
    ),
    (
        "height",
        rf"\b(?:height|ht|is){_SEP}(?:(?P<ft>\d)\s*(?:'|ft|feet|foot)\s*(?P<inch>\d{{1,2}})?\s*(?:\"|''|in|inches)?|"
        r"(?P<v>\d{2,3}(?:\.\d+)?)\s*(?P<u>cm|centimeters?|m|meters?|in|inches|\"))",
    ),
    ("bmi", rf"\b(?:bmi|body\s+mass\s+index){_SEP}(?P<v>\d{{2}}(?:\.\d+)?)(?:\s*(?P<u>kg/m2|kg/m\^2))?"),
]
VITAL_RES = [(kind, re.compile(p, re.IGNORECASE)) for kind, p in _VITAL_PATTERNS]

VITAL_UNITS = {
    "blood_pressure": "mm[Hg]", "heart_rate": "/min", "respiratory_rate": "/min", "temperature": "Cel",
    "spo2": "%", "weight": "kg", "height": "cm", "bmi": "kg/m2",
}
# plausible ranges after normalisation: a number outside is not that vital sign
_VITAL_RANGES = {
    "blood_pressure": (40, 300), "heart_rate": (20, 250), "respiratory_rate": (4, 70),
    "temperature": (25, 45), "spo2": (40, 100), "weight": (1, 400), "height": (30, 250), "bmi": (8, 90),
}


@dataclass(slots=True)
class VitalReading:
    kind: str
    start: int
    end: int
    value: float
    diastolic: float | None
    unit: str
    original_value: str
    original_unit: str | None


def find_vitals(text: str) -> list[VitalReading]:
    found: list[VitalReading] = []
    for kind, pattern in VITAL_RES:
        for m in pattern.finditer(text):
            reading = _vital_from_match(kind, m)
            if reading is not None:
                found.append(reading)
    return found


def _vital_from_match(kind: str, m: re.Match[str]) -> VitalReading | None:
    groups = m.groupdict()
    raw_unit = groups.get("u")
    unit_l = (raw_unit or "").lower().replace(" ", "")
    diastolic = None
    if kind == "height" and groups.get("ft"):
        feet = float(groups["ft"])
        inches = float(groups.get("inch") or 0)
        value = round((feet * 12 + inches) * 2.54, 1)
        original = m.group(0)[m.start("ft") - m.start():]
        raw_unit = "ft_i"
    else:
        original = groups["v"]
        value = float(original)
    if kind == "blood_pressure":
        diastolic = float(groups["v2"])
        original = f"{groups['v']}/{groups['v2']}"
        if not 20 <= diastolic <= 200 or diastolic >= value:
            return None
    elif kind == "temperature":
        if unit_l.endswith(("f", "fahrenheit")) or (not unit_l and value > 45):
            value = round((value - 32) * 5 / 9, 1)
    elif kind == "weight":
        if unit_l.startswith(("lb", "pound", "#")):
            value = round(value * 0.45359237, 1)
    elif kind == "height" and raw_unit != "ft_i":
        if unit_l in ("m", "meter", "meters"):
            value = round(value * 100, 1)
        elif unit_l in ("in", "inches", '"'):
            value = round(value * 2.54, 1)
    elif kind in ("heart_rate", "respiratory_rate") and m.group(0)[:1] in "PpRr" and len(
        m.group(0).split()[0].rstrip(":=")
    ) == 1:
        # a lone "P" or "R" is a vital only when written as one ("P 88", "R: 16"), not "r 2 days"
        if not re.match(r"[PpRr]\s*[:=]?\s*\d", m.group(0)):
            return None
    low, high = _VITAL_RANGES[kind]
    if not low <= value <= high:
        return None
    end = m.end()
    return VitalReading(kind, m.start(), end, value, diastolic, VITAL_UNITS[kind], original, raw_unit)


# ----------------------------------------------------------------------------------------------------
# labs

LAB_UNITS = {
    "mg/dl": "mg/dL", "g/dl": "g/dL", "mmol/l": "mmol/L", "meq/l": "meq/L", "u/l": "U/L", "iu/l": "[IU]/L",
    "ng/ml": "ng/mL", "pg/ml": "pg/mL", "ng/dl": "ng/dL", "ug/dl": "ug/dL", "mcg/dl": "ug/dL",
    "miu/l": "m[IU]/L", "uiu/ml": "u[IU]/mL", "miu/ml": "m[IU]/mL", "%": "%", "k/ul": "10*3/uL",
    "x10^3/ul": "10*3/uL", "10^3/ul": "10*3/uL", "x10e3/ul": "10*3/uL", "thou/ul": "10*3/uL",
    "k/mm3": "10*3/uL", "10*3/ul": "10*3/uL", "x 10^9/l": "10*9/L", "x10^9/l": "10*9/L", "10^9/l": "10*9/L",
    "mg/l": "mg/L", "sec": "s", "s": "s", "seconds": "s", "mm/hr": "mm/h", "mm/h": "mm/h", "fl": "fL",
    "ml/min/1.73m2": "mL/min/{1.73_m2}", "ml/min/1.73 m2": "mL/min/{1.73_m2}", "ml/min": "mL/min",
    "ng/l": "ng/L", "umol/l": "umol/L", "mg/g": "mg/g",
}
_UNIT_ALT = "|".join(re.escape(u) for u in sorted(LAB_UNITS, key=len, reverse=True))
_FLAGS = {
    "h": "high", "high": "high", "hi": "high", "elevated": "high", "↑": "high",
    "l": "low", "low": "low", "lo": "low", "↓": "low", "decreased": "low",
    "hh": "critical_high", "ll": "critical_low", "critical": "abnormal", "crit": "abnormal",
    "a": "abnormal", "abnormal": "abnormal", "abn": "abnormal", "*": "abnormal",
    "n": "normal", "normal": "normal", "wnl": "normal", "nl": "normal",
}
# after the name: optional "level/value", a separator, the value, unit, flag, range
LAB_TAIL = re.compile(
    r"(?:\s+(?:level|levels|value|count|result|today|now|peaked|rose|fell|increased|decreased|improved|"
    r"dropped|remains|remained|was|were|is|of|at|to|on admission|this morning|this am|yesterday|up|down)){0,3}"
    rf"\s*(?:of|was|were|is|are|at|=|:|-|,)?\s*"
    rf"(?P<v>[<>]=?\s*{_NUM}|{_NUM}|positive|negative|pos|neg|detected|not detected)"
    rf"(?:\s*(?P<u>{_UNIT_ALT})(?![a-z]))?"
    r"(?:\s*\(?\s*(?P<f>HH|LL|H|L|high|low|hi|lo|elevated|decreased|critical|abnormal|abn|A|\*|↑|↓)\s*\)?(?![\w]))?"
    rf"(?:\s*\(?\s*(?:ref(?:erence)?\.?(?:\s*range)?|nl|normal(?:\s*range)?|range|rr)?\s*:?\s*"
    rf"(?P<lo>{_NUM})\s*(?:-|–|to)\s*(?P<hi>{_NUM})\s*(?P<u2>{_UNIT_ALT})?\s*\)?)?",
    re.IGNORECASE,
)

def first_date(text: str, *, min_precision: Precision = "day", reference: date | None = None) -> str | None:
    """The first date written in ``text`` as ISO 8601 at its precision (see ``kit.dates``), or None."""

    found = find_dates(text, min_precision=min_precision, reference=reference)
    return found[0].iso() if found else None


_YEAR_CUE = re.compile(r"(?:in|on|at|of|from|dated?)?")
# what stands between the two dates of a period: "03/01/2020 to 03/05/2020", "2019-05-01 - 2019-05-03"
_PERIOD_JOIN = re.compile(r"\s*(?:-|–|—|to|through|thru|until|till)\s*", re.IGNORECASE)


def procedure_date(tail: str, *, reference: date | None = None) -> str | None:
    """The date written right after a procedure name: any date to the month ("colonoscopy March
    2019"), or a year alone when nothing but a cue word stands before it ("CABG in 1998")."""

    return procedure_dates(tail, reference=reference)[0]


def procedure_dates(tail: str, *, reference: date | None = None) -> tuple[str | None, str | None]:
    """(start, end) written after a procedure name: the date of :func:`procedure_date`, and the end
    of a period when a second date follows it joined by "to", "through", "until" or a dash and is not
    before it ("dialysis 2024-01-02 to 2024-01-09"); else (date, None)."""

    found = find_dates(tail, reference=reference)
    at = next((i for i, d in enumerate(found) if d.precision != "year"), None)
    if at is None:
        if not (found and _YEAR_CUE.fullmatch(tail[: found[0].start].strip())):
            return None, None
        at = 0
    start = found[at].iso()
    if at + 1 < len(found):
        following = found[at + 1]
        end = following.iso()
        if _PERIOD_JOIN.fullmatch(tail[found[at].end : following.start]) and end[: len(start)] >= start[: len(end)]:
            return start, end
    return start, None


def normalise_lab_unit(raw: str | None) -> str | None:
    if not raw:
        return None
    return LAB_UNITS.get(raw.lower().replace(" ", "") if raw.lower() not in LAB_UNITS else raw.lower())


def lab_flag(raw: str | None) -> str | None:
    if not raw:
        return None
    return _FLAGS.get(raw.lower()) or _FLAGS.get(raw)
