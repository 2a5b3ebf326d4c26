"""The grounding check: every number, date, drug name and diagnosis a model writes must be in the facts.

Generated text is split into sentences. In each sentence the checker finds the claims (dates at the
precision written, numbers outside dates, drug names through the drug dictionary, diagnosis wording
through :mod:`.concepts`) and looks each up in an index built from the source facts. A sentence with a
claim the facts do not support is *unsupported*: removed (mode ``remove``, the default) or kept with
flags (mode ``flag``). Supported sentences cite the facts their claims matched, plus any ``[F12]``
markers the model wrote that name real facts.

Two kinds of number are not record values and are checked as what they are:

- **counts** ("and 4 more item(s)", "36 encounter(s)", "3 orders", "the last 5"): a count is supported
  when the record yields it (facts of a kind, facts of one visit and those a visit line leaves out,
  orders of one medication, guideline checks); "the last N" of a series when some series has N values;
- **guideline figures** ("HbA1c below 7.0 %", "more than 365 days before 2028-08-26"): numbers and dates
  of the guideline checks evaluated on this record, when the index is built with them.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

from .facts import Fact, FactKind, PatientRecord
from .mentions import (
    DrugDictionary,
    find_dates,
    find_diagnoses,
    find_numbers,
    normalise_diagnosis,
    sentences,
    strip_spans,
)
from .output import GroundingReport, GuidelineCheck, Statement
from .template import MAX_ITEMS_PER_VISIT, age_on, visits

GroundingMode = Literal["remove", "flag"]

_CITATION = re.compile(r"\[\s*(F\d+(?:\s*[,;]\s*F?\d+)*)\s*\]")
_LIST_MARK = re.compile(r"^\s*(?:[-*•]|\d+[.)]|#+)\s+")
_HEADING = re.compile(r"^\s*\**\s*(narrative|assessment|summary|chronological narrative|plan|subjective|objective)"
                      r"\s*\**\s*:?\s*\**\s*$", re.I)
_STOP = {"of", "the", "and", "with", "type", "disorder", "finding", "disease", "acute", "chronic", "mellitus"}
MAX_CITES_PER_CLAIM = 3
MIN_WORDS = 3  # a generated statement has at least this many words
_COUNTED = (r"items?|item\(s\)|orders?|order\(s\)|encounters?|encounter\(s\)|visits?|visit\(s\)|notes?|"
            r"note\(s\)|(?:guideline\s+)?checks?|check\(s\)|prescriptions?|diagnos[ie]s|problems?|medications?|"
            r"allerg(?:y|ies)|procedures?")
# "4 more item(s)", "36 encounter(s)", "7 applicable guideline checks": the number counts record items
_COUNT = re.compile(rf"\b(\d+)\s+(?:more\s+|other\s+|applicable\s+|separate\s+|recorded\s+|active\s+)?(?:{_COUNTED})\b",
                    re.I)
_LAST_N = re.compile(r"\b(?:the\s+)?last\s+(\d+)(?=\s*(?:[:;,)]|values?|readings?|results?|measurements?))", re.I)


@dataclass
class Check:
    text: str
    citations: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    claims: int = 0


class GroundingIndex:
    """What the source facts say, indexed for the claim kinds the checker verifies."""

    def __init__(self, record: PatientRecord, drugs: DrugDictionary, checks: Sequence[GuidelineCheck] = ()):
        """``checks``: the guideline checks evaluated on ``record``; their thresholds and dates count
        as stated facts (the summary reports them)."""
        self.record = record
        self.drugs = drugs
        self.ids = {f.id for f in record.facts}
        self.numbers: dict[float, list[str]] = defaultdict(list)
        self.dates: dict[date, list[str]] = defaultdict(list)
        self.drug_names: dict[str, list[str]] = defaultdict(list)
        self.diagnoses: list[tuple[set[str], str, str]] = []  # (content tokens, normalised text, fact id)
        self.corpus: list[tuple[str, str]] = []  # (normalised text, fact id) of every fact
        self.counts: set[int] = set()  # counts the record yields
        self.longest_series = 0
        for f in record.facts:
            self._index(f)
        self._derived()
        self._counts(len(checks))
        for c in checks:
            self._guideline(c)

    def _index(self, f: Fact) -> None:
        for d in (f.date, f.end_date):
            if d:
                self.dates[d].append(f.id)
        text = " ".join(x for x in (f.label, f.value_text or "", f.detail or "", f.unit or "") if x)
        if f.value is not None:
            self.numbers[round(f.value, 6)].append(f.id)
        for mention in find_dates(text):
            day = mention.as_date()
            if day and mention.precision == "day":
                self.dates[day].append(f.id)
        stripped = strip_spans(text, [(d.start, d.end) for d in find_dates(text)])
        for value, _, _ in find_numbers(stripped):
            self.numbers[round(value, 6)].append(f.id)
        names = self.drugs.generic(f.label) if f.kind is FactKind.medication else set()
        names |= {g for g, _, _ in self.drugs.find(text)}
        for name in names:
            self.drug_names[name].append(f.id)
        norm = normalise_diagnosis(text)
        self.corpus.append((norm, f.id))
        if f.kind is FactKind.condition or (f.kind is FactKind.encounter and f.detail):
            self.diagnoses.append((_content(norm), norm, f.id))

    def _derived(self) -> None:
        """Numbers a faithful summary may compute: counts, ages, spans in years."""
        rec = self.record
        counts = Counter(f.kind for f in rec.facts)
        for kind, n in counts.items():
            self.numbers[float(n)].append(f"count:{kind.value}")
        demo = rec.demographics
        if demo.birth_date:
            for d in (rec.first_date, rec.last_date, date.today()):
                if d:
                    self.numbers[float(age_on(demo.birth_date, d))].append("age")
            self.dates[demo.birth_date].append("birth_date")
        if rec.first_date and rec.last_date:
            years = rec.last_date.year - rec.first_date.year
            for y in (years, years + 1, max(years - 1, 0)):
                self.numbers[float(y)].append("span")

    def _counts(self, n_checks: int) -> None:
        rec = self.record
        self.counts.update(Counter(f.kind for f in rec.facts).values())
        self.counts.update(Counter((f.kind, f.label.lower()) for f in rec.facts).values())
        if n_checks:
            self.counts.add(n_checks)
        for _day, _enc, facts in visits(rec):
            structured = [f for f in facts if f.status != "mentioned"
                          and not (f.source.span and f.kind is not FactKind.note)]
            for group in (facts, structured):
                self.counts.add(len(group))
                if len(group) > MAX_ITEMS_PER_VISIT:
                    self.counts.add(len(group) - MAX_ITEMS_PER_VISIT)
        series = Counter(f.concept for f in rec.of_kind(FactKind.observation) if f.concept and f.value is not None)
        self.longest_series = max(series.values(), default=0)
        self.counts.discard(0)

    def _guideline(self, check: GuidelineCheck) -> None:
        key = f"guideline:{check.rule}"
        text = f"{check.title}. {check.detail}"
        dates = find_dates(text)
        for mention in dates:
            day = mention.as_date()
            if day and mention.precision == "day":
                self.dates[day].append(key)
        for value, _, _ in find_numbers(strip_spans(text, [(d.start, d.end) for d in dates])):
            if key not in self.numbers[round(value, 6)]:
                self.numbers[round(value, 6)].append(key)

    # -- lookups --------------------------------------------------------------------------------
    def number(self, value: float, decimals: int) -> list[str] | None:
        hit = self.numbers.get(round(value, 6))
        if hit:
            return hit
        for known, ids in self.numbers.items():
            if round(known, decimals) == round(value, decimals):
                return ids
        return None

    def count(self, n: int, *, last: bool = False) -> bool:
        """Whether the record yields the count ``n`` ("the last ``n``" values of some series, if ``last``)."""
        return 0 < n <= self.longest_series if last else n in self.counts

    def date_ids(self, mention: object) -> list[str] | None:
        ids = [i for d, fact_ids in self.dates.items() if mention.matches(d) for i in fact_ids]  # type: ignore[attr-defined]
        return ids or None

    def drug(self, name: str) -> list[str] | None:
        return self.drug_names.get(name)

    def diagnosis(self, wording: str) -> list[str] | None:
        norm = normalise_diagnosis(wording)
        tokens = _content(norm)
        hits = [fid for toks, text, fid in self.diagnoses if norm in text or (tokens and tokens <= toks)]
        if hits:
            return hits
        hits = [fid for text, fid in self.corpus if re.search(rf"\b{re.escape(norm)}\b", text)]
        return hits or None


def _content(text: str) -> set[str]:
    return {w for w in text.split() if w not in _STOP and len(w) > 1}


def check_sentence(text: str, index: GroundingIndex) -> Check:
    result = Check(text=text)
    cited: list[str] = []
    for m in _CITATION.finditer(text):
        for raw in re.split(r"[,;]\s*", m.group(1)):
            fid = raw.strip() if raw.strip().startswith("F") else f"F{raw.strip()}"
            if fid in index.ids:
                cited.append(fid)
            else:
                result.problems.append("citation")
    clean = _CITATION.sub("", text)
    clean = re.sub(r"\s+([.,;:])", r"\1", clean).strip()
    result.text = clean
    matched: list[str] = []
    dates = find_dates(clean)
    for d in dates:
        result.claims += 1
        ids = index.date_ids(d)
        if ids is None:
            result.problems.append("date")
        else:
            matched.extend([i for i in ids if i.startswith("F")][:MAX_CITES_PER_CLAIM])
    rest = strip_spans(clean, [(d.start, d.end) for d in dates])
    counted = []
    for pattern, last in ((_COUNT, False), (_LAST_N, True)):
        for m in pattern.finditer(rest):
            counted.append(m.span(1))
            result.claims += 1
            if not index.count(int(m.group(1)), last=last):
                result.problems.append("count")
    rest = strip_spans(rest, counted)
    for value, start, end in find_numbers(rest):
        token = rest[start:end]
        decimals = len(token.split(".")[1]) if "." in token else 0
        result.claims += 1
        ids = index.number(value, decimals)
        if ids is None:
            result.problems.append("number")
        else:
            matched.extend(i for i in ids[:MAX_CITES_PER_CLAIM] if i.startswith("F"))
    drug_spans = []
    for name, start, end in index.drugs.find(clean):
        drug_spans.append((start, end))
        result.claims += 1
        ids = index.drug(name)
        if ids is None:
            result.problems.append("drug")
        else:
            matched.extend(ids[:MAX_CITES_PER_CLAIM])
    for wording, _start, _end in find_diagnoses(strip_spans(clean, drug_spans)):
        result.claims += 1
        ids = index.diagnosis(wording)
        if ids is None:
            result.problems.append("diagnosis")
        else:
            matched.extend(ids[:MAX_CITES_PER_CLAIM])
    seen: set[str] = set()
    result.citations = [c for c in [*cited, *matched] if not (c in seen or seen.add(c))]  # type: ignore[func-returns-value]
    return result


def ground_text(
    text: str, index: GroundingIndex, *, mode: GroundingMode, report: GroundingReport, fallback_cites: list[str] = ()  # type: ignore[assignment]
) -> list[Statement]:
    """Generated ``text`` as checked statements; ``report`` is updated in place."""
    out: list[Statement] = []
    seen: set[str] = set()
    for raw, _, _ in sentences(text):
        line = _LIST_MARK.sub("", raw).strip().strip("*").strip()
        if not line or _HEADING.match(line) or len(re.findall(r"[A-Za-z]{2,}", line)) < MIN_WORDS:
            continue  # headings and fragments ("145, met.") are not statements
        key = re.sub(r"\W+", " ", line.lower()).strip()
        if key in seen:  # a repeated sentence is said once
            continue
        seen.add(key)
        check = check_sentence(line, index)
        report.checked += 1
        report.claims_checked += check.claims
        if check.problems:
            report.unsupported += 1
            for kind in check.problems:
                report.unsupported_claims[kind] = report.unsupported_claims.get(kind, 0) + 1
            if mode == "remove":
                report.removed += 1
                continue
            report.flagged += 1
            out.append(Statement(text=check.text, citations=check.citations, generated=True,
                                 flags=sorted(set(check.problems))))
            continue
        report.supported += 1
        out.append(Statement(text=check.text, citations=check.citations or list(fallback_cites), generated=True))
    return out
