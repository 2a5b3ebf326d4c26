"""Pattern layer: identifiers with a recognisable shape, validated by checksums and context words.

Each detector is a function ``(text) -> Iterable[PhiSpan]``. Regexes are compiled once at import
(they hold no data) and scan the whole text in one pass each, so this layer costs little.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator

from ai_med_extract.agents.phi.types import PhiLabel, PhiSpan
from ai_med_extract.kit.dates import MONTH_PATTERN

_I = re.IGNORECASE

_MONTH = MONTH_PATTERN
_ORD = r"(?:[12]?\d|3[01])(?:st|nd|rd|th)?"
_YEAR = r"(?:(?:18|19|20)\d\d|'?\d\d)"

# Words before a bare number pair that make it a measurement, not a date ("pain 3/10", "BP 120/80").
_NOT_DATE_BEFORE = re.compile(
    r"\b(?:pain|score|strength|power|grade|ratio|bp|nbp|abp|art|pap|pa|cvp|map|peep|ps|ie|i:e|vt|"
    r"rate|x|of|gcs|murmur|sbp|dbp|hr|rr|o2|fio2|sat|sats|spo2|vent|imv|simv|cpap|bipap|"
    r"mg|mcg|units?|ml|cc|tab|tabs|abg|vbg|wbc|hct|plt|k|na|cr|bun|glucose|lytes)"
    r"\W{0,3}$",
    _I,
)
_NOT_DATE_AFTER = re.compile(
    r"^\s*(?:pain|strength|str|st|scale|ns|normal saline|peep|ps|cpap|mg|mcg|ml|cc|units|mmhg|cm|mm|%|x|tab|tabs|"
    r"strength|power|beats|breaths|bpm|sec|min|hrs?|hours?|times|of)\b",
    _I,
)
_DATE_CUE_BEFORE = re.compile(
    r"(?:on|since|from|until|till|thru|through|by|dated?|admit(?:ted)?|adm|d/c|dc'?d|s/p|"
    r"started|began|last|in|of|@|to|before|after|post|pod|as of|-)\W{0,2}$",
    _I,
)


def _valid_md(m: int, d: int) -> bool:
    return 1 <= m <= 12 and 1 <= d <= 31


def _span(m: re.Match[str], label: PhiLabel, score: float, detector: str, group: int | str = 0) -> PhiSpan:
    return PhiSpan(m.start(group), m.end(group), label, score, detector)


# --- dates --------------------------------------------------------------------------------------

_NUMERIC_DATE = re.compile(r"(?<![\d./])(?<!\d-)(\d{1,4})([/.-])(\d{1,2})(?:\2(\d{2}|\d{4}))?(?![\w/]|\.\d|-\d)")
_TEXT_DATE = re.compile(
    rf"(?<![\w])(?:(?P<d1>{_ORD})(?:\s*(?:->|-|to)\s*(?P<d1b>{_ORD}))?\s*(?:of\s+)?(?P<m1>{_MONTH})\.?"
    rf"|(?P<m2>{_MONTH})\.?\s*(?P<d2>{_ORD})(?:\s*(?:->|-|to)\s*(?P<d2b>{_ORD}))?(?![\w/:]))"
    rf"(?:,?\s*(?P<y>{_YEAR}))?(?![\w/])",
    _I,
)
_MONTH_YEAR = re.compile(rf"(?<![\w])(?P<m>{_MONTH})\.?,?\s+(?:of\s+)?(?P<y>(?:18|19|20)\d\d|'\d\d)(?!\w)", _I)
# A month word alone: only with a date cue ("in march", "last may"), since "may"/"march" are verbs.
_MONTH_ALONE = re.compile(
    r"(?:\b(?:in|since|during|early|late|mid|last|next|this|until|by)\s+(?:of\s+)?)"
    r"(?P<m>jan(?:uary)?|feb(?:ruary)?|march|april|may|june|july|aug(?:ust)?|sept?(?:ember)?|"
    r"oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\b(?!\s+(?:be|have|need|require|want|not)\b)",
    _I,
)
_ORDINAL_DAY = re.compile(
    r"\b(?:on|the|since|from|until|by)\s+(?:the\s+)?(?P<d>(?:[12]?\d|3[01])(?:st|nd|rd|th))\b"
    r"(?!\s+(?:step|time|dose|day|attempt|try|floor|degree|bag|unit|set|line|shift|of\s+\d)\b)",
    _I,
)
_YEAR_ALONE = re.compile(
    r"(?<![\w/.$#-])(?P<y>(?:19[0-9]\d|20[0-4]\d)(?:'?s)?)(?![\w/.]\d|\s*(?:mg|mcg|ml|cc|units?|kcal|g)\b)",
    _I,
)
_YEAR_CUE = re.compile(
    r"(?:\bin|circa|during|year|cabg|mi|avr|mvr|surgery|dx|diagnosed|s/p|x\d|\bhx)\W{0,3}$", _I
)
_TIME_CUE = re.compile(r"(?:at|@|~|until|till|by|due|from|around|approx\.?|x|to|since|-)\s*$", _I)
_APOS_YEAR = re.compile(r"(?<![\w'])'(?P<y>\d\d)(?![\w'])|(?<![\w'])(?P<y2>\d\d)'(?![\w'])")
_ISO_DATE = re.compile(r"(?<!\d)((?:18|19|20)\d\d)-(0?[1-9]|1[0-2])-(0?[1-9]|[12]\d|3[01])(?!\d)")
_WEEKDAY_DATE = None
# a slip of the pen between day and year: "11/21.93", "3/4.2001"
_MIXED_SEP_DATE = re.compile(r"(?<![\d./])(\d{1,2})/(\d{1,2})\.(\d{2}|(?:19|20)\d\d)(?![\w/]|\.\d)")


def find_dates(text: str) -> Iterator[PhiSpan]:
    for m in _ISO_DATE.finditer(text):
        yield _span(m, PhiLabel.DATE, 0.98, "pattern.date")
    for m in _NUMERIC_DATE.finditer(text):
        a, sep, b, y = m.group(1), m.group(2), m.group(3), m.group(4)
        if len(a) > 2:
            continue
        mo, d = int(a), int(b)
        glued = m.start() > 0 and text[m.start() - 1].isalpha()
        if (glued and not y) or (glued and text[m.start() - 1] in "xX"):
            continue  # "x10/5", "q4/6", "700x10/10/40"
        if text[m.end() : m.end() + 1] == "%":
            continue  # ventilator settings "10/5/50%"
        if not y and 1 <= mo <= 12 and len(b) == 2 and d >= 32 and sep == "/":
            before = text[max(0, m.start() - 12) : m.start()]
            if not _NOT_DATE_BEFORE.search(before) and not _NOT_DATE_AFTER.match(text[m.end() : m.end() + 16]):
                yield _span(m, PhiLabel.DATE, 0.85, "pattern.date")  # month/year: "12/93"
            continue
        if not _valid_md(mo, d):
            # day/month order is rare in these notes but accept it when unambiguous
            if not (y and _valid_md(d, mo)):
                continue
        before = text[max(0, m.start() - 12) : m.start()]
        after = text[m.end() : m.end() + 16]
        if y:
            score = 0.97
        else:
            if sep == ".":
                continue  # "3.5" is a number
            if sep == "-":
                continue  # "3-4 times", "4-6 on the pain scale": ranges far more often than dates
            if _NOT_DATE_BEFORE.search(before) or _NOT_DATE_AFTER.match(after):
                continue
            if after.startswith(("/", "%")):
                continue
            wide = text[max(0, m.start() - 30) : m.start()].lower()
            ahead = text[m.end() : m.end() + 24].lower()
            if b == "10" and re.search(r"pain|\bcp\b|discomfort|\bha\b|headache|scale", wide + " " + ahead):
                continue
            if mo == d and not re.search(r"(?:admit\w*|since|dated?|d/c'?d?)\W{0,2}$", before, _I):
                continue  # "5/5 strength", "10/10"
            strong_cue = re.search(r"\b(?:on|since|admit\w*|dated?|from)\W{0,2}$", before, _I)
            if not strong_cue and re.search(
                r"\b(?:psv|ps|cpap|peep|bipap|wean\w*|settings?|vent|flowby|flow-by|simv|imv)\b", wide
            ):
                continue
            frac = (mo, d) in {(1, 2), (1, 3), (2, 3), (1, 4), (3, 4), (1, 8), (1, 5)}
            if frac and not _DATE_CUE_BEFORE.search(before):
                continue
            score = 0.9
        yield _span(m, PhiLabel.DATE, score, "pattern.date")
    for m in _MIXED_SEP_DATE.finditer(text):
        unit = re.match(r"\s*(?:%|mg|mcg|ml|cc|g\b|units?|l\b|mmol|meq)", text[m.end() : m.end() + 8], _I)
        if _valid_md(int(m.group(1)), int(m.group(2))) and not unit:
            yield _span(m, PhiLabel.DATE, 0.85, "pattern.date")
    for m in _TEXT_DATE.finditer(text):
        mon = m.group("m1") or m.group("m2")
        if mon.lower() in ("may", "mar", "march", "jun", "dec", "jan", "sep", "aug") and not (
            m.group("d1") or m.group("d2")
        ):
            continue
        yield _span(m, PhiLabel.DATE, 0.95, "pattern.date")
    for m in _MONTH_YEAR.finditer(text):
        yield _span(m, PhiLabel.DATE, 0.95, "pattern.date", "m")
        yield _span(m, PhiLabel.YEAR, 0.95, "pattern.year", "y")
    for m in _MONTH_ALONE.finditer(text):
        yield _span(m, PhiLabel.DATE, 0.8, "pattern.date", "m")
    for m in _ORDINAL_DAY.finditer(text):
        yield _span(m, PhiLabel.DATE, 0.7, "pattern.date", "d")
    for m in _YEAR_ALONE.finditer(text):
        y = m.group("y")
        before = text[max(0, m.start() - 14) : m.start()]
        if _TIME_CUE.search(before) or re.match(r"\s*(?:-|to|hrs?|h\b|pm|am)", text[m.end() : m.end() + 4], _I):
            continue
        if int(y[2:4]) < 60 and not (_YEAR_CUE.search(before) or y.endswith("s")):
            continue  # "1930", "2000" are clock times in nursing notes
        yield _span(m, PhiLabel.YEAR, 0.85, "pattern.year", "y")
    for m in _APOS_YEAR.finditer(text):
        g = "y" if m.group("y") else "y2"
        before = text[max(0, m.start() - 14) : m.start()]
        if g == "y2" and not _YEAR_CUE.search(before):
            continue
        yield _span(m, PhiLabel.YEAR, 0.8, "pattern.year", g)


# --- ages over 89 -----------------------------------------------------------------------------

_AGE = re.compile(
    r"(?<![\w.])(?P<a>9\d|1[0-1]\d)(?:\s*|-)(?:yo\b|y/o|y\.o\.?|yr?s?\.?\s*old|years?[\s-]*old|year-old|"
    r"yo[mf]\b|y\s*o\b)",
    _I,
)
_AGE_LINE_START = re.compile(r"(?m)^\s*(?P<a>9\d|1[0-1]\d)\s+(?:s/p|yo|y/o|with|w/|year|yr|m\b|f\b|male|female)", _I)
_AGE_PHRASE = re.compile(r"\b(?:age[ds]?|aged)\s*:?\s*(?P<a>9\d|1[0-1]\d)\b", _I)


def find_ages(text: str) -> Iterator[PhiSpan]:
    for rx in (_AGE, _AGE_LINE_START, _AGE_PHRASE):
        for m in rx.finditer(text):
            yield _span(m, PhiLabel.AGE, 0.95, "pattern.age", "a")


# --- contact: phone, fax, pager, email, url, ip -------------------------------------------------

_PHONE = re.compile(
    r"(?<![\w/.])(?<!\d-)(?:\+?1[\s.-]?)?(?:\(\d{3}\)\s*|\d{3}[\s.-]?)\d{3}[\s.-]\d{4}(?![\w/-]|\.\d)"
)
_PHONE7 = re.compile(r"(?<![\w/.])(?<!\d-)\d{3}[\s.-]\d{4}(?![\w/-]|\.\d)")
_PHONE_CUE = re.compile(
    r"\b(?:pager|beeper|pg|bp#|page|phone|ph|tel|telephone|cell|cellular|mobile|home|work|office|"
    r"contact|call|reached|number|no|fax|extension|ext|x)\b\W{0,6}(?:number\W{0,4}|#\W{0,3})?$",
    _I,
)
_SHORT_NUMBER = re.compile(r"(?<![\w.:/-])\d{3,6}(?:-\d{4})?(?![\w:/]|\.\d)")
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"')\]]+", _I)
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9a-f]{1,4}:){2,7}[0-9a-f]{1,4}(?![\w:])", _I)


def find_contacts(text: str) -> Iterator[PhiSpan]:
    for m in _PHONE.finditer(text):
        before = text[max(0, m.start() - 20) : m.start()]
        label = PhiLabel.FAX if re.search(r"fax\W{0,6}$", before, _I) else PhiLabel.PHONE
        yield _span(m, label, 0.9, "pattern.phone")
    for m in _PHONE7.finditer(text):
        before = text[max(0, m.start() - 28) : m.start()]
        if _PHONE_CUE.search(before) or re.search(r"(?:phone|cell|home|call|#)\W{0,12}$", before, _I):
            yield _span(m, PhiLabel.PHONE, 0.8, "pattern.phone")
    for m in _SHORT_NUMBER.finditer(text):
        before = text[max(0, m.start() - 28) : m.start()]
        if _PHONE_CUE.search(before) and not re.search(r"\b(?:x|times)\W*$", before, _I):
            yield _span(m, PhiLabel.PHONE, 0.8, "pattern.phone.context")
    for m in _EMAIL.finditer(text):
        yield _span(m, PhiLabel.EMAIL, 0.99, "pattern.email")
    for m in _URL.finditer(text):
        end = m.end()
        while end > m.start() and text[end - 1] in ".,;:":
            end -= 1
        yield PhiSpan(m.start(), end, PhiLabel.URL, 0.95, "pattern.url")
    for m in _IPV4.finditer(text):
        try:
            ipaddress.IPv4Address(m.group(0))
        except ValueError:
            continue
        yield _span(m, PhiLabel.IP_ADDRESS, 0.9, "pattern.ip")
    for m in _IPV6.finditer(text):
        try:
            ipaddress.IPv6Address(m.group(0))
        except ValueError:
            continue
        yield _span(m, PhiLabel.IP_ADDRESS, 0.9, "pattern.ip")


# --- numbers with a meaning: SSN, MRN, account, plan, licence, vehicle, device, card ---------------

_SSN = re.compile(r"(?<![\d-])(\d{3})[- ]?(\d{2})[- ]?(\d{4})(?![\d-])")
_SSN_CUE = re.compile(r"\b(?:ssn|social security(?: number| no\.?| #)?|ss#|soc sec)\W{0,6}$", _I)


def _ssn_valid(area: str, group: str, serial: str) -> bool:
    a = int(area)
    return a not in (0, 666) and a < 900 and group != "00" and serial != "0000"


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2 == 1:
            n *= 2
            if n > 9:
                n -= 9
        total += n
    return total % 10 == 0


_ID_CUES: list[tuple[PhiLabel, re.Pattern[str]]] = [
    (PhiLabel.MRN, re.compile(r"\b(?:mrn|mr#|medical record(?: number| no\.?| #)?|record\s*#|unit\s*(?:no|number|#)|"
                              r"hospital\s*(?:no|number|#)|patient\s*id|pt\s*id)\W{0,6}$", _I)),
    (PhiLabel.HEALTH_PLAN, re.compile(r"\b(?:medicare|medicaid|insurance|member|policy|subscriber|plan|"
                                      r"beneficiary|group)\s*(?:id|no\.?|number|#)?\W{0,6}$", _I)),
    (PhiLabel.ACCOUNT, re.compile(r"\b(?:account|acct|billing|invoice|visit|encounter|fin|csn)\s*(?:id|no\.?|number|#)?"
                                  r"\W{0,6}$", _I)),
    (PhiLabel.LICENSE, re.compile(r"\b(?:licen[cs]e|lic|dea|npi|certificate|cert|driver'?s?\s*licen[cs]e|dl)\s*"
                                  r"(?:id|no\.?|number|#)?\W{0,6}$", _I)),
    (PhiLabel.VEHICLE, re.compile(r"\b(?:vin|license plate|plate|vehicle(?: id)?)\s*(?:no\.?|number|#)?\W{0,6}$", _I)),
    (PhiLabel.DEVICE, re.compile(r"\b(?:serial|s/n|sn|device(?: id)?|model(?: no\.?)?|lot|udi|implant id)\s*"
                                 r"(?:no\.?|number|#)?\W{0,6}$", _I)),
    (PhiLabel.BIOMETRIC, re.compile(r"\b(?:fingerprint|retina(?:l)? scan|voice ?print|biometric)\s*(?:id|no\.?|#)?"
                                    r"\W{0,6}$", _I)),
    (PhiLabel.ID, re.compile(r"\b(?:id|identifier|ref(?:erence)?|case|accession|specimen|sample|badge)\s*"
                             r"(?:no\.?|number|#)\W{0,6}$", _I)),
]  # fmt: skip
_ID_TOKEN = re.compile(r"(?<![\w-])(?=[A-Z0-9-]*\d)[A-Z0-9][A-Z0-9-]{3,24}(?![\w-])", _I)
_CARD = re.compile(r"(?<!\d)(?:\d[ -]?){13,19}(?!\d)")
_VIN = re.compile(r"\b[A-HJ-NPR-Z0-9]{17}\b")
_PHOTO = re.compile(r"\b(?:photo|photograph|picture|image)\s*(?:id|#|no\.?)\s*:?\s*[\w-]+", _I)


def find_numbers(text: str) -> Iterator[PhiSpan]:
    for m in _SSN.finditer(text):
        before = text[max(0, m.start() - 24) : m.start()]
        dashed = m.group(0).count("-") == 2
        if not _ssn_valid(m.group(1), m.group(2), m.group(3)):
            continue
        if _SSN_CUE.search(before):
            yield _span(m, PhiLabel.SSN, 0.97, "pattern.ssn")
        elif dashed and len(m.group(0)) == 11:
            yield _span(m, PhiLabel.SSN, 0.85, "pattern.ssn")
    for m in _ID_TOKEN.finditer(text):
        tok = m.group(0)
        if any(c.isalpha() for c in tok) and sum(c.isdigit() for c in tok) < 3:
            continue  # "HbA1c", "SpO2", "CD4", "B12": lab and clinical abbreviations, not identifiers
        before = text[max(0, m.start() - 36) : m.start()]
        for label, cue in _ID_CUES:
            if cue.search(before):
                yield _span(m, label, 0.9, f"pattern.{label.lower()}")
                break
    for m in _CARD.finditer(text):
        digits = re.sub(r"\D", "", m.group(0))
        if 13 <= len(digits) <= 19 and _luhn(digits) and len(set(digits)) > 2:
            yield _span(m, PhiLabel.ACCOUNT, 0.9, "pattern.card")
    for m in _VIN.finditer(text):
        s = m.group(0)
        if any(c.isdigit() for c in s) and any(c.isalpha() for c in s):
            yield _span(m, PhiLabel.VEHICLE, 0.85, "pattern.vin")
    for m in _PHOTO.finditer(text):
        yield _span(m, PhiLabel.PHOTO, 0.8, "pattern.photo")


# --- addresses and ZIP codes ------------------------------------------------------------------

_STREET = re.compile(
    r"\b\d{1,6}\s+(?:[NSEW]\.?\s+)?(?:[A-Z][a-z'.-]+\s+){1,4}"
    r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Place|Pl|Terrace|Way|"
    r"Parkway|Pkwy|Highway|Hwy|Circle|Cir|Square|Sq|STREET|AVENUE|ROAD|BOULEVARD|LANE|DRIVE)\b\.?"
    r"(?:\s*(?:apt|apartment|unit|suite|ste|#)\.?\s*\w+)?"
)
# streets in text without case ("lives at 19 clover st.", "AT 19 CLOVER ST."): an address cue before,
# a street word written out or abbreviated with a full stop after
_STREET_CASELESS = re.compile(
    r"(?<![\w.])(?P<a>\d{1,5}\s+(?:[a-z][a-z'-]{2,}\s+){1,3}"
    r"(?:street|avenue|road|lane|boulevard|drive|terrace|parkway|highway|st\.|ave\.|rd\.|ln\.|blvd\.))",
    _I,
)
_STREET_CUE = re.compile(r"\b(?:at|on|lives|live|living|address|addr)\W{0,3}\s*$", _I)
_PO_BOX = re.compile(r"\bp\.?\s*o\.?\s*box\s+\d+\b", _I)
_STATES = (
    "AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ|NM|NY|"
    "NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY"
)
_ZIP = re.compile(rf"(?:\b(?:{_STATES})\.?,?\s+|\bzip(?:\s*code)?\W{{0,4}})(?P<z>\d{{5}}(?:-\d{{4}})?)\b", _I)


def find_addresses(text: str) -> Iterator[PhiSpan]:
    for m in _STREET.finditer(text):
        yield _span(m, PhiLabel.ADDRESS, 0.85, "pattern.address")
    for m in _STREET_CASELESS.finditer(text):
        if not _STREET_CUE.search(text[max(0, m.start() - 16) : m.start()]):
            continue
        yield _span(m, PhiLabel.ADDRESS, 0.8, "pattern.address", "a")
    for m in _PO_BOX.finditer(text):
        yield _span(m, PhiLabel.ADDRESS, 0.9, "pattern.address")
    for m in _ZIP.finditer(text):
        yield _span(m, PhiLabel.ZIP, 0.9, "pattern.zip", "z")


def find_all(text: str) -> list[PhiSpan]:
    out: list[PhiSpan] = []
    for fn in (find_dates, find_ages, find_contacts, find_numbers, find_addresses):
        out.extend(fn(text))
    return out
