"""Medication instructions ("sig") read from the words that follow a drug name.

``parse_sig`` gets the window of text after a drug mention (up to the next drug, line end or
sentence end) and returns normalised strength, dose, unit, route, frequency, duration and PRN, plus
the length of the window it consumed so the medication's span can cover it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NUM = r"(?:\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?|\.\d+)"
_WORD_NUMBERS = {
    "one": 1.0, "two": 2.0, "three": 3.0, "four": 4.0, "five": 5.0, "six": 6.0, "seven": 7.0,
    "eight": 8.0, "nine": 9.0, "ten": 10.0, "half": 0.5, "1/2": 0.5, "a": 1.0, "an": 1.0,
}

_STRENGTH_UNITS = {
    "mg": "mg", "milligram": "mg", "milligrams": "mg", "mgs": "mg",
    "mcg": "mcg", "ug": "mcg", "µg": "mcg", "microgram": "mcg", "micrograms": "mcg",
    "g": "g", "gm": "g", "gram": "g", "grams": "g", "gms": "g",
    "unit": "unit", "units": "unit", "u": "unit", "iu": "unit",
    "meq": "meq", "mmol": "mmol", "ml": "mL", "cc": "mL", "l": "L", "%": "%", "mg/ml": "mg/mL",
    "mg/kg": "mg/kg", "mcg/hr": "mcg/h", "mcg/h": "mcg/h", "mg/hr": "mg/h", "units/hr": "unit/h",
    "l/min": "L/min", "lpm": "L/min", "liters": "L", "liter": "L",
}
_FORMS = {
    "tab": "tablet", "tabs": "tablet", "tablet": "tablet", "tablets": "tablet", "tb": "tablet",
    "cap": "capsule", "caps": "capsule", "capsule": "capsule", "capsules": "capsule",
    "puff": "puff", "puffs": "puff", "inhalation": "puff", "inhalations": "puff",
    "drop": "drop", "drops": "drop", "gtt": "drop", "gtts": "drop",
    "spray": "spray", "sprays": "spray", "patch": "patch", "patches": "patch",
    "ampule": "ampule", "vial": "vial", "packet": "packet", "packets": "packet",
    "suppository": "suppository", "lozenge": "lozenge", "application": "application",
}
_ROUTES = [
    (r"p\.?o\.?|by mouth|orally|oral(?:ly)?|per os", "oral"),
    (r"i\.?v\.?p\.?b?|i\.?v\.?|intravenous(?:ly)?|iv push|ivpb", "intravenous"),
    (r"i\.?m\.?|intramuscular(?:ly)?", "intramuscular"),
    (r"s\.?c\.?|s\.?q\.?|subq|sub-q|subcut|subcutaneous(?:ly)?", "subcutaneous"),
    (r"s\.?l\.?|sublingual(?:ly)?|under the tongue", "sublingual"),
    (r"inh|inhaled|inhalation|via nebuli[sz]er|nebuli[sz]ed|neb|nebs|mdi", "inhalation"),
    (r"topical(?:ly)?|to skin|apply", "topical"),
    (r"p\.?r\.?|per rectum|rectal(?:ly)?", "rectal"),
    (r"transdermal(?:ly)?|td", "transdermal"),
    (r"intranasal(?:ly)?|nasal(?:ly)?|per nostril|each nostril", "nasal"),
    (r"ophthalmic|o\.?u\.?|o\.?d\.?(?=\s+(?:bid|tid|qid|daily|q))|o\.?s\.?|each eye|in eyes?", "ophthalmic"),
    (r"per g-?tube|per peg|via g-?tube|per ng ?tube", "enteral"),
]
_FREQUENCIES = [
    (r"q\.?\s?(\d{1,2})\s?-\s?(\d{1,2})\s?h(?:rs?|ours?)?\.?|every\s+(\d{1,2})\s?(?:-|to)\s?(\d{1,2})\s+hours?", "Q{0}-{1}H"),
    (r"q\.?\s?(\d{1,2})\s?h(?:rs?|ours?)?\.?|every\s+(\d{1,2})\s+h(?:ou)?rs?", "Q{0}H"),
    (r"b\.?i\.?d\.?|twice (?:a |per )?(?:day|daily)|2 times (?:a |per )?day|two times (?:a |per )?day|q12h", "BID"),
    (r"t\.?i\.?d\.?|three times (?:a |per )?(?:day|daily)|3 times (?:a |per )?day|q8h", "TID"),
    (r"q\.?i\.?d\.?|four times (?:a |per )?(?:day|daily)|4 times (?:a |per )?day|q6h", "QID"),
    (r"q\.?h\.?s\.?|at bedtime|nightly|every night|at night|qpm at bedtime|h\.?s\.?", "QHS"),
    (r"q\.?a\.?m\.?|every morning|in the morning|each morning", "QAM"),
    (r"q\.?p\.?m\.?|every evening|in the evening", "QPM"),
    (r"q\.?o\.?d\.?|every other day|alternate days", "QOD"),
    (r"(?:once\s+)?weekly|once a week|every week|q\.?\s?w(?:ee)?k\.?|q\s?week|1x/week", "QW"),
    (r"(?:once\s+)?monthly|once a month|every month|q\s?month", "QMO"),
    (r"q\.?d\.?|daily|once (?:a |per )?day|every day|q\s?day|1x/day|once daily|od|qdaily|per day|a day", "QD"),
    (r"once|x\s?1|one time|stat|now", "ONCE"),
    (r"continuous(?:ly)?|drip|infusion", "CONTINUOUS"),
]
_DURATION_UNITS = {"d": "day", "day": "day", "days": "day", "wk": "week", "wks": "week", "week": "week",
                   "weeks": "week", "mo": "month", "mos": "month", "month": "month", "months": "month"}

_STRENGTH_RE = re.compile(
    rf"(?<![\w.])({_NUM}(?:\s?/\s?{_NUM})?)\s?-?\s?("
    + "|".join(re.escape(u) for u in sorted(_STRENGTH_UNITS, key=len, reverse=True))
    + r")(?![a-z])",
    re.IGNORECASE,
)
_DOSE_RE = re.compile(
    rf"(?<![\w.])({_NUM}(?:\s?-\s?{_NUM})?|one|two|three|four|half|1/2|an?)\s+(?:x\s+)?("
    + "|".join(sorted(_FORMS, key=len, reverse=True))
    + r")\b",
    re.IGNORECASE,
)
_ROUTE_RES = [(re.compile(rf"(?<![\w])(?:{p})(?![\w])", re.IGNORECASE), r) for p, r in _ROUTES]
_FREQ_RES = [(re.compile(rf"(?<![\w])(?:{p})(?![\w])", re.IGNORECASE), r) for p, r in _FREQUENCIES]
_PRN_RE = re.compile(
    r"(?<![\w])(?:p\.?r\.?n\.?|as needed|as-needed|when needed|if needed)"
    r"(?:\s*(?:for|f/)?\s*(?!q\d|every|x\d|max|up to)([a-z][a-z /-]{1,30}?)(?=$|[,.;)\n]|\s+(?:q\d*h?|every|x|for|up|max|not)\b))?",
    re.IGNORECASE,
)
_DURATION_RE = re.compile(
    rf"(?<![\w])(?:for|x|times|duration)\s*({_NUM}|one|two|three|four|five|six|seven|ten)\s*-?\s*"
    r"(days?|d|weeks?|wks?|months?|mos?)\b",
    re.IGNORECASE,
)


_CONCENTRATION_RE = re.compile(r"\s?/\s?(\d+(?:\.\d+)?)?\s?(?:ml|cc)\b", re.IGNORECASE)
_VOLUME_RE = re.compile(rf"(?<![\w/.])({_NUM})\s?(?:ml|cc)\b", re.IGNORECASE)
_BARE_DOSE_RE = re.compile(
    rf"^\s*({_NUM})\s+(?=(?:{'|'.join(p for p, _ in _FREQUENCIES[:12])}|{'|'.join(p for p, _ in _ROUTES[:6])})(?![\w]))",
    re.IGNORECASE,
)


@dataclass(slots=True)
class Sig:
    strength: str | None = None
    dose: float | None = None
    unit: str | None = None
    route: str | None = None
    frequency: str | None = None
    duration: str | None = None
    prn: bool = False
    prn_reason: str | None = None
    end: int = 0  # characters of the window the sig occupies


def _number(raw: str) -> float | None:
    raw = raw.strip().lower()
    raw = raw.replace(",", "") if re.fullmatch(r"\d{1,3}(?:,\d{3})+", raw) else raw.replace(",", ".")
    if raw in _WORD_NUMBERS:
        return _WORD_NUMBERS[raw]
    if "-" in raw:  # "1-2 tabs": the lower bound is the dose
        raw = raw.split("-")[0].strip()
    try:
        return float(raw)
    except ValueError:
        return None


def _fmt(value: float) -> str:
    return f"{value:g}"


def parse_sig(window: str) -> Sig:
    sig = Sig()
    consumed = 0

    strength = _STRENGTH_RE.search(window)
    if strength and strength.start() <= 40:
        unit = _STRENGTH_UNITS[strength.group(2).lower()]
        amount = strength.group(1).replace(" ", "")
        sig.strength = f"{amount} {unit}"
        consumed = max(consumed, strength.end())
        concentration = _CONCENTRATION_RE.match(window, strength.end())
        if concentration:
            # "400 mg/5 mL": a concentration; the dose is a volume given later ("give 7.5 mL")
            sig.strength = f"{amount} {unit}/{concentration.group(1) or ''}{'' if not concentration.group(1) else ' '}mL"
            consumed = max(consumed, concentration.end())
            volume = _VOLUME_RE.search(window, concentration.end())
            if volume and volume.start() - concentration.end() <= 40:
                sig.dose, sig.unit = _number(volume.group(1)), "mL"
                consumed = max(consumed, volume.end())
        elif "/" not in amount:
            sig.dose, sig.unit = _number(amount), unit
    else:
        bare = _BARE_DOSE_RE.match(window)
        if bare:
            # "lisinopril 20 daily": a number straight after the name, before the frequency or route
            sig.dose = _number(bare.group(1))
            consumed = max(consumed, bare.end(1))

    dose = _DOSE_RE.search(window)
    if dose and dose.start() <= 60:
        value = _number(dose.group(1))
        if value is not None:
            sig.dose, sig.unit = value, _FORMS[dose.group(2).lower()]
            consumed = max(consumed, dose.end())

    for pattern, route in _ROUTE_RES:
        found = pattern.search(window)
        if found and found.start() <= 80:
            sig.route = route
            consumed = max(consumed, found.end())
            break

    best: tuple[int, str, re.Match[str]] | None = None
    for pattern, code in _FREQ_RES:
        found = pattern.search(window)
        if found and (best is None or found.start() < best[0]):
            best = (found.start(), code, found)
    if best is not None:
        _, code, found = best
        numbers = [g for g in found.groups() if g]
        sig.frequency = code.format(*numbers) if "{" in code else code
        consumed = max(consumed, found.end())

    prn = _PRN_RE.search(window)
    if prn:
        sig.prn = True
        if prn.group(1):
            sig.prn_reason = prn.group(1).strip().lower()
        consumed = max(consumed, prn.end())

    duration = _DURATION_RE.search(window)
    if duration:
        value = _number(duration.group(1))
        duration_unit = _DURATION_UNITS.get(duration.group(2).lower())
        if value is not None and duration_unit:
            sig.duration = f"{_fmt(value)} {duration_unit}"
            consumed = max(consumed, duration.end())

    sig.end = consumed
    return sig
