"""The rules-and-dictionaries detectors: candidates with exact offsets, before clinical context.

Each detector returns ``Candidate`` objects whose ``start``/``end`` index the original text; nothing
here rewrites the text, so offsets stay exact. ``RuleDetectors`` is built once per agent.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from . import measurements as ms
from .sig import Sig, parse_sig
from .vocabulary import Term, Vocabulary, compile_terms, lookup

_TOKEN_RE = re.compile(r"[A-Za-z][A-Za-z0-9']*")
_COMBINATION_JOIN = re.compile(r"[ \t]?[-/][ \t]?")
_LINE_END = re.compile(r"\n")
# a sentence end: ". Next" or ". 30 mL/kg ...", but not the period of "p.o." or "b.i.d."
_SENTENCE_BREAK = re.compile(r"(?<![a-zA-Z]\.[a-zA-Z])\.\s+(?=[A-Z][a-z]|\d)|;|\n")

_STATUS_BEFORE = re.compile(
    r"\b(?:(?P<stopped>stopped|stop|discontinued|discontinue|d/c'?d|dc'?d|d/c|dc|off|quit|no longer (?:on|taking))|"
    r"(?P<hold>hold|held|holding)|"
    r"(?P<intended>will start|will begin|plan to start|to start|start|begin|initiate|recommend|prescribe|add|"
    r"will add|consider|trial|may try|try|"
    r"rx|trial of)|"
    r"(?P<active>prescribed|started|began|initiated|continue|continued|resume|resumed|on|taking|takes|increase|"
    r"increased|decrease|decreased|switched to|changed to)|"
    r"(?P<completed>completed|finished|s/p course of))\b",
    re.IGNORECASE,
)
_STATUS_AFTER = re.compile(
    r"^[^\n.;]{0,60}?\b(?:was|were|has been|is|been)?\s*(?P<stopped>stopped|discontinued|d/c'?d|dc'?d)|"
    r"^[^\n.;]{0,60}?\b(?P<hold>held|on hold|hold)\b|"
    r"^[^\n.;]{0,60}?\b(?P<completed>completed)",
    re.IGNORECASE,
)
_ALLERGY_CUE = re.compile(
    r"\b(?:allergic\s+to|allerg(?:y|ies)\s+(?:to|include|includes|are|is)|allerg(?:y|ies)\s*[:\-]|"
    r"all\s*:|intoleran(?:t|ce)\s+to|adverse\s+reactions?\s+to|reactions?\s+to|sensitivity\s+to|"
    r"allergies/adverse reactions\s*:|drug allergies\s*:|(?:^|\n)[ \t]*(?:known\s+)?allerg(?:y|ies)\b)",
    re.IGNORECASE,
)
_NKDA = re.compile(
    r"\b(?:NKDA|NKA|NKFA|no\s+known\s+(?:drug\s+|medication\s+|food\s+)?allerg(?:y|ies)|"
    r"no\s+(?:drug\s+|medication\s+)?allerg(?:y|ies)|allerg(?:y|ies)\s*:\s*(?:none|nka|nkda|no known)(?:\s+known)?|"
    r"denies\s+(?:any\s+)?(?:drug\s+)?allerg(?:y|ies))\b",
    re.IGNORECASE,
)
_REACTIONS = {
    "rash": "rash", "hives": "urticaria", "urticaria": "urticaria", "anaphylaxis": "anaphylaxis",
    "anaphylactic": "anaphylaxis", "angioedema": "angioedema", "swelling": "swelling",
    "throat swelling": "throat swelling", "lip swelling": "lip swelling", "facial swelling": "facial swelling",
    "itching": "pruritus", "itch": "pruritus", "pruritus": "pruritus", "nausea": "nausea",
    "vomiting": "vomiting", "diarrhea": "diarrhea", "gi upset": "gi upset", "upset stomach": "gi upset",
    "shortness of breath": "shortness of breath", "sob": "shortness of breath", "wheezing": "wheezing",
    "cough": "cough", "dizziness": "dizziness", "headache": "headache", "myalgia": "myalgia",
    "muscle aches": "myalgia", "stevens-johnson": "stevens-johnson syndrome", "sjs": "stevens-johnson syndrome",
    "palpitations": "palpitations", "confusion": "confusion", "hallucinations": "hallucinations",
    "hypotension": "hypotension", "blisters": "blisters", "flushing": "flushing", "redness": "erythema",
    "tongue swelling": "tongue swelling", "difficulty breathing": "shortness of breath",
}
_REACTION_RE = re.compile(
    r"\b(?:" + "|".join(re.escape(r) for r in sorted(_REACTIONS, key=len, reverse=True)) + r")\b",
    re.IGNORECASE,
)
_SEVERITY_RE = re.compile(r"\b(mild|moderate|severe|life[- ]threatening)\b", re.IGNORECASE)
# words after a drug name that show the word names a lab or a level, not a medication
_LAB_AFTER = re.compile(r"^\s*(?:level|levels|lvl|was|of\s+\d)", re.IGNORECASE)


@dataclass(slots=True)
class Candidate:
    kind: str  # problem | procedure | medication | lab | vital | allergy
    start: int
    end: int
    detector: str
    name: str
    code: str | None = None
    # the span ConText looks at (the name, not the whole sig or value)
    anchor: tuple[int, int] | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def anchor_span(self) -> tuple[int, int]:
        return self.anchor or (self.start, self.end)


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _within(inner: tuple[int, int], outer: tuple[int, int]) -> bool:
    return outer[0] <= inner[0] and inner[1] <= outer[1]


class SpanIndex:
    """Sorted spans answering "does anything overlap / contain this span" in O(log n + k)."""

    def __init__(self, spans: Iterable[tuple[int, int]]) -> None:
        self._spans = sorted(spans)
        self._starts = [s for s, _ in self._spans]
        self._longest = max((e - s for s, e in self._spans), default=0)

    def _near(self, start: int, end: int) -> Iterator[tuple[int, int]]:
        i = bisect.bisect_left(self._starts, end)
        lowest = start - self._longest
        while i > 0:
            i -= 1
            if self._starts[i] < lowest:
                break
            yield self._spans[i]

    def overlaps(self, span: tuple[int, int]) -> bool:
        return any(_overlaps(span, other) for other in self._near(*span))

    def container(self, span: tuple[int, int]) -> tuple[int, int] | None:
        return next((other for other in self._near(*span) if _within(span, other)), None)


class RuleDetectors:
    def __init__(self, vocabulary: Vocabulary) -> None:
        self.vocab = vocabulary
        self._problem_re = compile_terms(vocabulary.problems)
        self._icd_re = compile_terms(vocabulary.icd_terms)
        self._procedure_re = compile_terms(vocabulary.procedures)
        self._lab_re = compile_terms(vocabulary.lab_terms)
        self._allergen_re = compile_terms(vocabulary.allergens)
        ambiguous = [
            Term(t.surface, t.canonical, False, t.code) for t in vocabulary.lab_terms if t.case_sensitive
        ]
        self._lab_ambiguous = compile_terms(ambiguous)
        from drug_named_entity_recognition import find_drugs

        self._find_drugs = find_drugs
        # DrugBank id -> the dictionary's name for it (the display of the code)
        self.drug_names: dict[str, str] = {}
        self._alias_codes = {
            generic: code for generic in set(vocabulary.drug_aliases.values())
            if (code := self._dictionary_code(generic)) is not None
        }

    def _drugbank(self, data: dict[str, Any]) -> str | None:
        code = data.get("drugbank_id")
        if not isinstance(code, str) or not code:
            return None
        self.drug_names.setdefault(code, str(data.get("name", "")))
        return code

    def _dictionary_code(self, generic: str) -> str | None:
        """The DrugBank id of a generic name when the dictionary reads all of it as one drug."""

        words = generic.split()
        hits = self._find_drugs(words, is_ignore_case=True)
        if len(hits) == 1 and hits[0][1] == 0 and hits[0][2] == len(words):
            return self._drugbank(hits[0][0])
        return None

    # -- generic lexicon matching ------------------------------------------------------------
    @staticmethod
    def _terms(text: str, compiled: tuple[Any, Any, dict[str, Term]]) -> list[tuple[int, int, Term]]:
        insensitive, sensitive, by_surface = compiled
        found: list[tuple[int, int, Term]] = []
        for pattern in (insensitive, sensitive):
            if pattern is None:
                continue
            for m in pattern.finditer(text):
                term = lookup(by_surface, m.group())
                if term is not None:
                    found.append((m.start(), m.end(), term))
        return found

    # -- detectors ------------------------------------------------------------------------------
    def detect(self, text: str) -> list[Candidate]:
        vitals = self.vitals(text)
        vital_index = SpanIndex((v.start, v.end) for v in vitals)
        labs = [c for c in self.labs(text) if not vital_index.overlaps((c.start, c.end))]
        allergy_regions = self._allergy_regions(text)
        meds, allergies = self.medications_and_allergies(text, allergy_regions)
        # a lab value read inside a medication's sig ("magnesium 400 mg daily") belongs to the medication
        sig_index = SpanIndex((m.start, m.end) for m in meds if m.data["sig"])
        labs = [c for c in labs if not sig_index.overlaps((c.start, c.end))]
        lab_index = SpanIndex((c.start, c.end) for c in labs)
        meds = [m for m in meds if m.data["sig"] or not lab_index.overlaps(m.anchor_span)]
        meds = [m for m in meds if not vital_index.overlaps(m.anchor_span)]
        taken = SpanIndex([
            *((c.start, c.end) for c in (*vitals, *labs)),
            *(c.anchor_span for c in meds),
            *((a.start, a.end) for a in allergies),
        ])
        med_index = SpanIndex((m.start, m.end) for m in meds)
        problems = [
            c for c in self.problems(text)
            if not taken.overlaps((c.start, c.end))
            # indications inside a sig ("prn pain") are not problems of their own
            and med_index.container((c.start, c.end)) is None
        ]
        procedures = self.procedures(text)
        return [*problems, *procedures, *meds, *labs, *vitals, *allergies]

    def problems(self, text: str) -> list[Candidate]:
        curated = [
            Candidate("problem", s, e, "lexicon:problems", t.canonical, t.code)
            for s, e, t in self._terms(text, self._problem_re)
        ]
        icd = [
            Candidate("problem", s, e, "lexicon:icd10cm", t.canonical, t.code)
            for s, e, t in self._terms(text, self._icd_re)
        ]
        return _longest_first([*curated, *icd])

    def procedures(self, text: str) -> list[Candidate]:
        found = []
        for s, e, t in self._terms(text, self._procedure_re):
            c = Candidate("procedure", s, e, "lexicon:procedures", t.canonical)
            tail = re.split(r"[.;,]\s|\n", text[e : e + 40], maxsplit=1)[0]
            date, end = ms.procedure_dates(tail)
            if date:
                c.data["date"] = date
            if end:
                c.data["end_date"] = end
            found.append(c)
        return _longest_first(found)

    def vitals(self, text: str) -> list[Candidate]:
        readings = ms.find_vitals(text)
        found = []
        for r in readings:
            line_start = text.rfind("\n", 0, r.start) + 1
            line_end = text.find("\n", r.end)
            line = text[line_start : line_end if line_end != -1 else len(text)]
            found.append(
                Candidate(
                    "vital", r.start, r.end, "regex:vitals", r.kind,
                    data={"reading": r, "date": ms.first_date(line)},
                )
            )
        return _longest_first(found)

    def labs(self, text: str) -> list[Candidate]:
        found = self._labs_from(text, self._terms(text, self._lab_re))
        # short case-sensitive aliases ("K", "Ca", "Mg") written in lower case count inside a line that
        # already holds two or more lab results ("na 140 k 4.0 cl 104")
        lower = [
            (s, e, t) for s, e, t in self._terms(text, self._lab_ambiguous)
            if not any(c.start == s for c in found)
        ]
        if lower:
            extra = []
            for c in self._labs_from(text, lower):
                line_start = text.rfind("\n", 0, c.start) + 1
                line_end = text.find("\n", c.end)
                line_end = len(text) if line_end == -1 else line_end
                if sum(1 for f in found if line_start <= f.start < line_end) >= 2:
                    extra.append(c)
            found = _longest_first([*found, *extra])
        return found

    def _labs_from(self, text: str, matches: list[tuple[int, int, Term]]) -> list[Candidate]:
        found = []
        for s, e, term in matches:
            m = ms.LAB_TAIL.match(text, e)
            if m is None:
                continue
            definition = self.vocab.labs[term.canonical]
            raw_value = re.sub(r"\s+", "", m.group("v"))
            value: float | None
            try:
                value = float(raw_value.lstrip("<>="))
            except ValueError:
                value = None
            unit = ms.normalise_lab_unit(m.group("u")) or ms.normalise_lab_unit(m.group("u2"))
            if unit is None and value is not None:
                unit = definition.unit
            low = float(m.group("lo")) if m.group("lo") else None
            high = float(m.group("hi")) if m.group("hi") else None
            flag = ms.lab_flag(m.group("f"))
            if flag is None and value is not None and low is not None and high is not None:
                flag = "high" if value > high else "low" if value < low else "normal"
            end = m.end()
            while end > e and text[end - 1] in " \t(":
                end -= 1
            line_start = text.rfind("\n", 0, s) + 1
            line_end = text.find("\n", end)
            line = text[line_start : line_end if line_end != -1 else len(text)]
            c = Candidate(
                "lab", s, end, "regex:labs", term.canonical, definition.loinc, anchor=(s, e),
                data={
                    "value": value, "value_text": raw_value, "unit": unit, "low": low, "high": high,
                    "flag": flag, "date": ms.first_date(line),
                },
            )
            found.append(c)
        return _longest_first(found)

    # -- medications and allergies -----------------------------------------------------------------
    def _drug_mentions(self, text: str) -> list[tuple[int, int, str, str | None, bool]]:
        """(start, end, generic name, DrugBank id, from the dictionary) for each drug name."""

        tokens = [(m.start(), m.end(), m.group()) for m in _TOKEN_RE.finditer(text)]
        words = [t[2] for t in tokens]
        mentions: list[tuple[int, int, str, str | None, bool]] = []
        if words:
            for data, first, last in self._find_drugs(words, is_ignore_case=True):
                start, end = tokens[first][0], tokens[last - 1][1]
                name = str(data.get("name", words[first])).lower()
                if len(text[start:end]) < 3:
                    continue
                mentions.append((start, end, name, self._drugbank(data), True))
        taken = SpanIndex((s, e) for s, e, *_ in mentions)
        for s, e, word in tokens:
            generic = self.vocab.drug_aliases.get(word.lower())
            if generic and not taken.overlaps((s, e)):
                mentions.append((s, e, generic, self._alias_codes.get(generic), False))
        # two-word aliases ("insulin glargine")
        for alias, generic in self.vocab.drug_aliases.items():
            if " " not in alias:
                continue
            for m in re.finditer(rf"(?<!\w){re.escape(alias)}(?!\w)", text, re.IGNORECASE):
                span = (m.start(), m.end())
                mentions = [x for x in mentions if not _within((x[0], x[1]), span)]
                mentions.append((m.start(), m.end(), generic, self._alias_codes.get(generic), False))
        mentions.sort()
        # combination products written with a hyphen or slash: "carbidopa-levodopa"
        merged: list[tuple[int, int, str, str | None, bool]] = []
        for mention in mentions:
            if merged and _COMBINATION_JOIN.fullmatch(text[merged[-1][1] : mention[0]]):
                prev = merged.pop()
                joined = prev[2] if prev[2] == mention[2] else f"{prev[2]}-{mention[2]}"
                merged.append((prev[0], mention[1], joined, None, prev[4] and mention[4]))
            else:
                merged.append(mention)
        return merged

    def _allergy_regions(self, text: str) -> list[tuple[int, int]]:
        regions = []
        for m in _ALLERGY_CUE.finditer(text):
            end = text.find("\n", m.end())
            end = len(text) if end == -1 else end
            # an "Allergies:" header with the list on the following lines
            if not text[m.end() : end].strip():
                nxt = text.find("\n\n", end + 1)
                end = len(text) if nxt == -1 else nxt
            # a sentence end, not the number of a list item ("1. Vancomycin")
            sentence = re.search(r"(?<!\d)\.\s", text[m.end() : end])
            if sentence:
                end = m.end() + sentence.start()
            regions.append((m.start(), end))
        return regions

    def medications_and_allergies(
        self, text: str, allergy_regions: list[tuple[int, int]]
    ) -> tuple[list[Candidate], list[Candidate]]:
        allergies: list[Candidate] = []
        for m in _NKDA.finditer(text):
            # "Allergies: no known food allergies" matches as far as "Allergies: no known"
            name, snomed = _no_known_kind(re.split(r"[\n.;]", text[m.start() : m.end() + 24], maxsplit=1)[0])
            allergies.append(
                Candidate("allergy", m.start(), m.end(), "regex:nkda", name, snomed, data={"no_known": True})
            )
        nkda_spans = [(a.start, a.end) for a in allergies]

        mentions = self._drug_mentions(text)
        mention_starts = [m[0] for m in mentions]
        regions = SpanIndex(allergy_regions)
        nkda_index = SpanIndex(nkda_spans)
        meds: list[Candidate] = []
        substances: list[tuple[int, int, str, str | None, str]] = []
        for position, (start, end, name, code, from_dictionary) in enumerate(mentions):
            if regions.container((start, end)) is not None:
                substances.append((start, end, name, code, "medication"))
                continue
            if nkda_index.overlaps((start, end)):
                continue
            next_start = mention_starts[position + 1] if position + 1 < len(mentions) else len(text)
            meds.append(self._medication(text, start, end, name, code, next_start, from_dictionary=from_dictionary))

        substance_index = SpanIndex((s[0], s[1]) for s in substances)
        for start, end, term in self._terms(text, self._allergen_re):
            if regions.container((start, end)) is not None and not substance_index.overlaps((start, end)):
                substances.append((start, end, term.canonical, None, term.extra[0] if term.extra else "medication"))
        substances.sort()

        for i, (start, end, name, code, category) in enumerate(substances):
            region = regions.container((start, end))
            assert region is not None
            nxt = substances[i + 1][0] if i + 1 < len(substances) else region[1]
            tail_end = min(nxt, region[1])
            tail = text[end:tail_end]
            reactions: list[str] = []
            last = end
            for r in _REACTION_RE.finditer(tail):
                reaction = _REACTIONS[r.group().lower()]
                if reaction not in reactions:
                    reactions.append(reaction)
                last = end + r.end()
            severity = _SEVERITY_RE.search(tail)
            if severity:
                last = max(last, end + severity.end())
            allergies.append(
                Candidate(
                    "allergy", start, last, "lexicon:allergy", name, code, anchor=(start, end),
                    data={
                        "no_known": False, "category": category, "reactions": reactions,
                        "severity": severity.group(1).lower().replace("life threatening", "severe")
                        .replace("life-threatening", "severe") if severity else None,
                    },
                )
            )
        return meds, allergies

    def _medication(
        self, text: str, start: int, end: int, name: str, code: str | None, next_start: int | None = None,
        *, from_dictionary: bool = True,
    ) -> Candidate:
        """A medication from its name span; the sig is read up to the next drug name (``next_start``)."""

        limit = len(text) if next_start is None or next_start < end else next_start
        brk = _SENTENCE_BREAK.search(text, end, min(limit, end + 160))
        window_end = brk.start() if brk else min(limit, end + 160)
        window = text[end:window_end]
        sig: Sig | None = parse_sig(window) if not _LAB_AFTER.match(window) else None
        has_sig = sig is not None and any(
            (sig.strength, sig.dose is not None, sig.route, sig.frequency, sig.prn, sig.duration)
        )
        span_end = end + (sig.end if sig and has_sig else 0)
        line_start = max(text.rfind("\n", 0, start) + 1, start - 40)
        before = text[line_start:start]
        status = "active"
        cues = list(_STATUS_BEFORE.finditer(before))
        if cues:
            last = cues[-1]
            status = next(k for k, v in last.groupdict().items() if v)
        after = _STATUS_AFTER.search(text[span_end:window_end + 40])
        if after:
            status = next(k for k, v in after.groupdict().items() if v)
        status = {"hold": "on-hold"}.get(status, status)
        return Candidate(
            "medication", start, span_end, "dictionary:drugs" if from_dictionary else "lexicon:drug_aliases", name, code,
            anchor=(start, end), data={"sig": sig if has_sig else None, "status": status},
        )


    def from_proposal(self, text: str, kind: str, start: int, end: int, detector: str) -> Candidate | None:
        """A candidate for a span proposed by another detector (the LLM), read with the same rules.

        Labs and vitals need a value the rules can read in the span; others take their name from it.
        """

        surface = text[start:end]
        name = re.sub(r"\s+", " ", surface.strip().lower())
        if not name:
            return None
        if kind in ("problem", "procedure"):
            return Candidate(kind, start, end, detector, name)
        if kind == "medication":
            mentions = self._drug_mentions(surface)
            if mentions:
                s, e, generic, code, from_dictionary = mentions[0]
                cand = self._medication(text, start + s, start + e, generic, code, from_dictionary=from_dictionary)
            else:
                first = re.match(r"[A-Za-z][\w-]*", surface)
                if first is None:
                    return None
                cand = self._medication(text, start, start + first.end(), first.group().lower(), None,
                                        from_dictionary=False)
            cand.detector = detector
            return cand
        if kind == "allergy":
            return Candidate("allergy", start, end, detector, name,
                             data={"no_known": False, "category": None, "reactions": [], "severity": None})
        if kind == "lab":
            for cand in self.labs(surface):
                cand.start, cand.end = cand.start + start, cand.end + start
                cand.anchor = (cand.anchor[0] + start, cand.anchor[1] + start) if cand.anchor else None
                cand.detector = detector
                return cand
            return None
        if kind == "vital":
            for cand in self.vitals(surface):
                cand.start, cand.end = cand.start + start, cand.end + start
                cand.detector = detector
                return cand
        return None


def _no_known_kind(written: str) -> tuple[str, str]:
    """The statement and its SNOMED CT concept (the ones FHIR's AllergyIntolerance codes name)."""

    lowered = written.lower()
    if re.search(r"food|\bnkfa\b", lowered):
        return "no known food allergies", "429625007"
    if re.search(r"drug|medication|\bnkda\b", lowered):
        return "no known drug allergies", "409137002"
    return "no known allergies", "716186003"


def _longest_first(cands: list[Candidate]) -> list[Candidate]:
    """Drop candidates overlapping an earlier-kept, longer (or earlier-listed) one of the same kind."""

    order = sorted(enumerate(cands), key=lambda ic: (-(ic[1].end - ic[1].start), ic[0]))
    kept: list[Candidate] = []
    starts: list[int] = []  # kept spans, sorted by start; kept spans never overlap each other
    ends: list[int] = []
    for _, c in order:
        i = bisect.bisect_left(starts, c.start)
        if (i < len(starts) and starts[i] < c.end) or (i > 0 and ends[i - 1] > c.start):
            continue
        starts.insert(i, c.start)
        ends.insert(i, c.end)
        kept.append(c)
    return sorted(kept, key=lambda c: c.start)
