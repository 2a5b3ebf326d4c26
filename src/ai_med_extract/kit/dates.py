"""Dates in clinical text: finding, parsing, normalising and shifting them, with one set of rules.

Every layer that reads a date uses this module: de-identification (which dates to hide and how to move
them), medical extraction (dates of labs and procedures) and summaries (dates of facts and of the
claims a generated sentence makes).

The API:

- :func:`find_dates` -- every date written in a text, as :class:`DateMention` (span, year, month, day
  and the precision written), most precise form first where forms overlap;
- :func:`parse_date` -- one string that is a date as a whole (``"3/4/98"``, ``"March 3, 2021"``);
- :func:`parse_fhir_date` -- a FHIR/ISO 8601 ``date`` or ``dateTime`` (``2021``, ``2021-03``,
  ``2021-03-04T10:00:00Z``), strict;
- :func:`expand_year` -- the two-digit-year rule;
- :func:`shift_date_text` -- a date moved by some days, written back in the form it was written in;
- ``MONTHS`` and ``MONTH_PATTERN`` -- month names and abbreviations, for detectors that need them.

**The two-digit-year rule.** A date is never in the future of the document it came from. A year
written with two digits takes the century that puts the date on or before the *reference date*: the
document's own date when known, else today. With a reference in 2026, ``3/4/98`` is 1998-03-04 and
``3/4/25`` is 2025-03-04; a date after the reference in the same century (``12/30/26`` read on
2026-12-02) belongs to the century before. Four-digit years are taken as written.

Numeric dates are read month first (US order); when the first number cannot be a month and the second
can (``15/08/2021``), they are read day first.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

Precision = Literal["year", "month", "day"]
_RANK: dict[str, int] = {"year": 0, "month": 1, "day": 2}

MONTHS: dict[str, int] = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
MONTHS.update({name.lower(): i for i, name in enumerate(calendar.month_abbr) if name})
MONTHS["sept"] = 9
MONTH_PATTERN = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
    r"sept?(?:ember)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
_MONTH_NAMES = list(calendar.month_name)[1:]
_EARLIEST, _LATEST = 1800, 2200

_ISO = re.compile(
    r"(?<![\w-])(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?(?![\w-])"
)
_NUMERIC = re.compile(r"(?<![\w/.-])(\d{1,2})([/-])(\d{1,2})\2(\d{4}|\d{2})(?![\w/]|[.-]\d)")
_MDY = re.compile(
    rf"(?<!\w)({MONTH_PATTERN})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?,?\s+(\d{{4}}|'\d{{2}})(?![\w'])", re.I
)
_DMY = re.compile(rf"(?<!\w)(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?({MONTH_PATTERN})\.?,?\s+(\d{{4}})(?!\w)", re.I)
_MY = re.compile(rf"(?<!\w)({MONTH_PATTERN})\.?,?\s+(?:of\s+)?(\d{{4}})(?!\w)", re.I)
_YM = re.compile(r"(?<![\w-])(\d{4})-(\d{2})(?![\w-])")
_YEAR = re.compile(r"(?<![\w.-])((?:19|20)\d{2})(?!\w|\.\d)")
_FHIR = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?"
)


@dataclass(frozen=True, slots=True)
class DateMention:
    """A date in text at the precision it was written: ``day``, ``month`` or ``year``."""

    year: int
    month: int | None
    day: int | None
    start: int
    end: int

    @property
    def precision(self) -> Precision:
        return "day" if self.day else "month" if self.month else "year"

    def matches(self, d: date) -> bool:
        """Whether ``d`` falls within this mention (same year, and month and day where written)."""

        if d.year != self.year:
            return False
        if self.month is not None and d.month != self.month:
            return False
        return self.day is None or d.day == self.day

    def as_date(self) -> date | None:
        """The first day the mention covers (``2021-03`` gives 2021-03-01)."""

        try:
            return date(self.year, self.month or 1, self.day or 1)
        except ValueError:
            return None

    def iso(self) -> str:
        """ISO 8601 at the written precision (``2021``, ``2021-03``, ``2021-03-04``): a valid FHIR date."""

        if self.month is None:
            return f"{self.year:04d}"
        if self.day is None:
            return f"{self.year:04d}-{self.month:02d}"
        return f"{self.year:04d}-{self.month:02d}-{self.day:02d}"


def expand_year(two_digits: int, *, month: int = 1, day: int = 1, reference: date | None = None) -> int:
    """The four-digit year of a two-digit one: the latest century that keeps the date on or before
    ``reference`` (the document's date; today when ``None``)."""

    ref = reference or date.today()
    year = ref.year - ref.year % 100 + two_digits
    try:
        after = date(year, month, min(day, calendar.monthrange(year, month)[1])) > ref
    except ValueError:
        after = year > ref.year
    return year - 100 if after else year


def _valid(y: int, m: int | None, d: int | None) -> bool:
    if not _EARLIEST <= y <= _LATEST:
        return False
    if m is None:
        return d is None
    if not 1 <= m <= 12:
        return False
    return d is None or 1 <= d <= calendar.monthrange(y, m)[1]


def _year(raw: str, month: int | None, day: int | None, reference: date | None) -> int:
    digits = raw.lstrip("'")
    if len(digits) == 2:
        return expand_year(int(digits), month=month or 1, day=day or 1, reference=reference)
    return int(digits)


def _numeric(first: int, second: int, raw_year: str, reference: date | None) -> tuple[int, int, int] | None:
    month, day = first, second
    if not 1 <= month <= 12 and 1 <= day <= 12:
        month, day = day, month  # day first: "15/08/2021"
    if not 1 <= month <= 12 or not 1 <= day <= 31:
        return None
    year = _year(raw_year, month, day, reference)
    return (year, month, day) if _valid(year, month, day) else None


def find_dates(
    text: str, *, reference: date | None = None, min_precision: Precision = "year"
) -> list[DateMention]:
    """Dates in ``text`` in the order they appear.

    Forms, most precise first (a weaker match overlapping a stronger one is dropped): ISO
    ``2021-03-04`` (a time after it is part of the span), numeric ``3/4/2021``, ``3-4-98``, month names
    ``March 4, 2021``, ``4 Mar 2021``, ``Mar '98``, then ``March 2021``, ``2021-03`` and a bare year 1900-2099.
    ``reference`` is the document's date for the two-digit-year rule (today when ``None``);
    ``min_precision`` drops coarser mentions (``"day"`` keeps only full dates).
    """

    found: list[DateMention] = []
    taken: list[tuple[int, int]] = []
    floor = _RANK[min_precision]

    def add(y: int, m: int | None, d: int | None, s: int, e: int) -> None:
        if any(s < te and ts < e for ts, te in taken):
            return
        if not _valid(y, m, d):
            if d is not None:
                taken.append((s, e))  # "2/30/2021" is no date, and its parts are none either
            return
        mention = DateMention(y, m, d, s, e)
        if _RANK[mention.precision] < floor:
            return
        taken.append((s, e))
        found.append(mention)

    for m in _ISO.finditer(text):
        add(int(m[1]), int(m[2]), int(m[3]), m.start(), m.end())
    for m in _NUMERIC.finditer(text):
        ymd = _numeric(int(m[1]), int(m[3]), m[4], reference)
        add(*(ymd or (0, 0, 0)), m.start(), m.end())
    for m in _MDY.finditer(text):
        month, day = MONTHS[m[1].lower()], int(m[2])
        add(_year(m[3], month, day, reference), month, day, m.start(), m.end())
    for m in _DMY.finditer(text):
        add(int(m[3]), MONTHS[m[2].lower()], int(m[1]), m.start(), m.end())
    if floor <= _RANK["month"]:
        for m in _MY.finditer(text):
            add(int(m[2]), MONTHS[m[1].lower()], None, m.start(), m.end())
        for m in _YM.finditer(text):
            add(int(m[1]), int(m[2]), None, m.start(), m.end())
    if floor <= _RANK["year"]:
        for m in _YEAR.finditer(text):
            add(int(m[1]), None, None, m.start(), m.end())
    return sorted(found, key=lambda d: d.start)


def parse_date(value: str, *, reference: date | None = None) -> DateMention | None:
    """``value`` read as one date in any form :func:`find_dates` knows; ``None`` unless the whole
    string (spaces and trailing punctuation aside) is that date."""

    stripped = value.strip().rstrip(".,;")
    mentions = find_dates(stripped, reference=reference)
    if len(mentions) == 1 and mentions[0].start == 0 and mentions[0].end == len(stripped):
        return mentions[0]
    return None


def parse_fhir_date(value: str) -> DateMention | None:
    """A FHIR ``date``/``dateTime`` (ISO 8601, partial dates allowed); ``None`` when not one."""

    m = _FHIR.fullmatch(value.strip())
    if m is None:
        return None
    y, mo, d = int(m[1]), int(m[2]) if m[2] else None, int(m[3]) if m[3] else None
    return DateMention(y, mo, d, 0, len(value.strip())) if _valid(y, mo, d) else None


# -- shifting ------------------------------------------------------------------------------------

_SHIFT_YEAR = 2001  # a date written without a year is shifted as if in this (non-leap) year
_SHIFT_ISO = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")
_SHIFT_NUMERIC = re.compile(r"(\d{1,2})([/.-])(\d{1,2})(?:\2(\d{2}|\d{4}))?")
_SHIFT_MONTH_DAY = re.compile(r"([A-Za-z]+)\.?\s+(\d{1,2})(?:st|nd|rd|th)?(?:,?\s+(\d{4}))?")
_SHIFT_DAY_MONTH = re.compile(r"(\d{1,2})(?:st|nd|rd|th)?\s+(?:of\s+)?([A-Za-z]+)\.?,?(?:\s+(\d{4}))?")


def _match_case(name: str, written: str) -> str:
    letters = [c for c in written if c.isalpha()]
    if len(letters) > 1 and all(c.isupper() for c in letters):
        return name.upper()
    if letters and all(c.islower() for c in letters):
        return name.lower()
    return name


def _moved(year: int, month: int, day: int, delta: timedelta) -> date | None:
    try:
        return date(year, month, day) + delta
    except (ValueError, OverflowError):
        return None


def shift_date_text(value: str, offset_days: int, *, reference: date | None = None) -> str | None:
    """``value`` moved by ``offset_days``, written in the same form (separator, year digits, month
    name and its case); ``None`` when the form is not understood. Two-digit years follow the rule
    above; a date without a year keeps having none."""

    v = value.strip()
    delta = timedelta(days=offset_days)
    if m := _SHIFT_ISO.fullmatch(v):
        d = _moved(int(m[1]), int(m[2]), int(m[3]), delta)
        return d.isoformat() if d else None
    if m := _SHIFT_NUMERIC.fullmatch(v):
        month, day, sep, written_year = int(m[1]), int(m[3]), m[2], m[4]
        year = _SHIFT_YEAR if written_year is None else _year(written_year, month, day, reference)
        d = _moved(year, month, day, delta) if 1 <= month <= 12 else None
        if d is None:
            return None
        out = f"{d.month}{sep}{d.day}"
        if written_year is not None:
            out += sep + (str(d.year) if len(written_year) == 4 else f"{d.year % 100:02d}")
        return out
    if (m := _SHIFT_MONTH_DAY.fullmatch(v)) and m[1].lower() in MONTHS:
        d = _moved(int(m[3]) if m[3] else _SHIFT_YEAR, MONTHS[m[1].lower()], int(m[2]), delta)
        if d is None:
            return None
        return _match_case(_MONTH_NAMES[d.month - 1], m[1]) + f" {d.day}" + (f", {d.year}" if m[3] else "")
    if (m := _SHIFT_DAY_MONTH.fullmatch(v)) and m[2].lower() in MONTHS:
        d = _moved(int(m[3]) if m[3] else _SHIFT_YEAR, MONTHS[m[2].lower()], int(m[1]), delta)
        if d is None:
            return None
        return f"{d.day} " + _match_case(_MONTH_NAMES[d.month - 1], m[2]) + (f" {d.year}" if m[3] else "")
    return None


def shift_year(year: int, offset_days: int) -> int:
    """The year a date in mid-``year`` lands in after ``offset_days`` (for a year written alone)."""

    return (date(year, 7, 1) + timedelta(days=offset_days)).year
