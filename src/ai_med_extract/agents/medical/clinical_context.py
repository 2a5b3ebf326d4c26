"""Clinical context (medspaCy ConText) and note sections (medspaCy Sectionizer).

Built once per agent: ``ClinicalContext()`` creates the spaCy pipeline (tokenizer, a line-aware
sentence splitter, ConText with the default rules plus ours, the sectionizer with the default rules
plus ours). ``annotate(text, spans)`` tokenises the text, attaches the candidate spans as a span group,
runs ConText and the sectionizer, and returns per-span context flags and the section list.
"""

from __future__ import annotations

import bisect
import re
import warnings
from dataclasses import dataclass
from typing import Any

# medspaCy's sentence splitter (PyRuSH) logs every sentence at DEBUG through loguru
from loguru import logger

logger.disable("PyRuSH")

SPAN_GROUP = "ame_targets"

# medspaCy / our section categories -> the normalised names in the output
SECTION_NAMES = {
    "allergy": "allergies", "allergies": "allergies",
    "chief_complaint": "chief_complaint",
    "diagnoses": "diagnoses", "problem_list": "problem_list",
    "family_history": "family_history",
    "history_of_present_illness": "hpi",
    "hospital_course": "hospital_course",
    "imaging": "imaging",
    "labs_and_studies": "labs", "labs": "labs",
    "medications": "medications",
    "observation_and_plan": "assessment_and_plan", "assessment_and_plan": "assessment_and_plan",
    "past_medical_history": "past_medical_history",
    "past_surgical_history": "past_surgical_history",
    "patient_instructions": "patient_instructions",
    "physical_exam": "physical_exam",
    "review_of_systems": "review_of_systems",
    "social_history": "social_history", "sexual_and_social_history": "social_history",
    "vital_signs": "vitals", "vitals": "vitals",
    "procedures": "procedures",
}

_EXTRA_SECTIONS: dict[str, list[str]] = {
    "past_medical_history": [
        "past medical history", "pmh", "pmhx", "medical history", "past history", "hx", "history",
        "past medical hx", "pmh/psh", "significant medical history",
    ],
    "past_surgical_history": ["past surgical history", "psh", "pshx", "surgical history", "surgeries"],
    "medications": [
        "medications", "meds", "current medications", "home medications", "home meds", "medication list",
        "outpatient medications", "current meds", "discharge medications", "medications on admission",
        "admission medications", "active medications", "rx",
    ],
    "allergies": ["allergies", "allergy", "drug allergies", "all", "allergies/adverse reactions"],
    "family_history": ["family history", "fh", "fhx", "family hx", "family medical history"],
    "social_history": ["social history", "sh", "shx", "social hx", "habits"],
    "review_of_systems": ["review of systems", "ros", "systems review"],
    "physical_exam": ["physical exam", "physical examination", "exam", "pe", "examination"],
    "vitals": ["vitals", "vital signs", "vs", "vital sign"],
    "labs": ["labs", "laboratory", "lab results", "laboratory data", "laboratory results", "pertinent labs",
             "results", "data"],
    "imaging": ["imaging", "radiology", "studies"],
    "assessment_and_plan": [
        "assessment and plan", "assessment/plan", "a/p", "a&p", "assessment", "plan", "impression",
        "impression and plan", "impression/plan", "clinical impression", "recommendations",
    ],
    "history_of_present_illness": ["history of present illness", "hpi", "present illness", "interval history",
                                   "subjective", "s"],
    "chief_complaint": ["chief complaint", "cc", "reason for visit", "reason for consultation"],
    "diagnoses": ["diagnosis", "diagnoses", "discharge diagnosis", "discharge diagnoses", "final diagnosis",
                  "admitting diagnosis", "principal diagnosis", "secondary diagnoses"],
    "problem_list": ["problem list", "problems", "active problems"],
    "procedures": ["procedures", "procedure", "operations", "procedures performed"],
    "hospital_course": ["hospital course", "course"],
    "patient_instructions": ["instructions", "discharge instructions", "follow up", "follow-up", "disposition"],
}

_FAMILY_WORDS = [
    "mother", "father", "mom", "dad", "brother", "brothers", "sister", "sisters", "sibling", "siblings",
    "aunt", "uncle", "grandmother", "grandfather", "grandparent", "grandparents", "maternal", "paternal",
    "cousin", "son", "daughter", "parents", "parent", "family history of", "fhx of", "fh of",
    "family hx of", "fhx", "family member", "twin",
]
_NEGATION_FORWARD = [
    "denies", "denied", "denying", "w/o", "neg for", "negative for", "no h/o", "no hx of", "no history of",
    "no evidence of", "no signs of", "no sign of", "not taking", "not on", "never had", "free of",
    "no complaints of", "no c/o", "absence of", "rules out", "ruled out for", "no known", "no new", "nor",
    "neither",
]
_NEGATION_BACKWARD = ["absent", "negative", "ruled out", "is ruled out", "was ruled out", "resolved", "denied",
                      "none", "not present", "not seen", "unlikely"]
_POSSIBLE_FORWARD = [
    "possible", "possibly", "probable", "probably", "likely", "suspected", "suspect", "suspicious for",
    "questionable", "question of", "concern for", "concerning for", "cannot exclude", "cannot rule out",
    "can't rule out", "may have", "might have", "could be", "consistent with", "differential includes",
    "differential diagnosis includes", "ddx", "presumed", "presumptive", "borderline", "vs", "versus",
    "rule out", "r/o", "?",
]
_POSSIBLE_BACKWARD = ["suspected", "is suspected", "possible", "questionable", "likely", "vs", "versus",
                      "not excluded", "cannot be excluded", "?"]
_HISTORICAL = ["history of", "hx of", "h/o", "s/p", "status post", "prior", "previous", "previously",
               "remote", "in the past", "past", "former", "old", "years ago", "childhood"]
_HYPOTHETICAL = ["if", "return if", "call if", "should", "watch for", "monitor for", "in case of",
                 "return for", "as needed for", "risk of", "to prevent", "prevention of", "prophylaxis",
                 "screen for", "screening for", "evaluate for", "assess for"]
_TERMINATE = ["but", "however", "although", "except", "aside from", "apart from", "which", "who",
              "presents with", "complains of", "c/o", "reports", "endorses", "admits to", "positive for",
              "+"]
# section titles that contain a cue word ("history") but modify nothing
_PSEUDO = ["past medical history", "medical history", "family history", "surgical history", "social history",
           "history of present illness", "history:", "past history", "clinical history", "family hx",
           "social hx", "surgical hx", "medical hx", "past hx", "pmhx", "fhx:", "no change",
           "not only", "no increase", "no further", "no suspicious change", "gram negative", "without difficulty"]


@dataclass(frozen=True, slots=True)
class SpanContext:
    negated: bool
    uncertain: bool
    historical: bool
    hypothetical: bool
    family: bool
    section: str | None


@dataclass(frozen=True, slots=True)
class SectionSpan:
    category: str
    title: str
    start: int
    end: int


class ClinicalContext:
    """The medspaCy pipeline, built once and reused for every note."""

    def __init__(self) -> None:
        import spacy
        from medspacy.context import ConText, ConTextRule  # noqa: F401  (registers the factory)
        from medspacy.custom_tokenizer import create_medspacy_tokenizer
        from medspacy.section_detection import Sectionizer, SectionRule  # noqa: F401

        nlp = spacy.blank("en")
        nlp.tokenizer = create_medspacy_tokenizer(nlp)
        if not spacy.language.Language.has_factory("ame_line_sentences"):
            spacy.language.Language.component("ame_line_sentences", func=_line_sentences)
        nlp.add_pipe("ame_line_sentences")
        context: Any = nlp.add_pipe(
            "medspacy_context",
            config={"input_span_type": "group", "span_group_name": SPAN_GROUP},
        )
        context.add(_context_rules(ConTextRule))
        sectionizer: Any = nlp.add_pipe(
            "medspacy_sectionizer",
            config={
                "input_span_type": "group",
                "span_group_name": SPAN_GROUP,
                "require_start_line": True,
                "span_attrs": {"family_history": {"is_family": True}},
            },
        )
        sectionizer.add(_section_rules(SectionRule))
        self._nlp = nlp

    @property
    def nlp(self) -> Any:
        return self._nlp

    def annotate(
        self, text: str, spans: list[tuple[int, int, str]], *, chunk_chars: int = 2000
    ) -> tuple[list[SpanContext], list[SectionSpan]]:
        """Context for each (start, end, label) span, and the note's sections.

        ConText compares every modifier with every other and with every target of a document, so it
        runs on chunks of about ``chunk_chars`` that end at a line break starting a new sentence (its
        scope never crosses a sentence). The sectionizer runs once over the whole note.
        """

        sections = self._sections(text)
        starts = [s.start for s in sections]
        flags: list[tuple[bool, bool, bool, bool, bool] | None] = [None] * len(spans)
        order = sorted(range(len(spans)), key=lambda i: spans[i][0])
        position = 0
        for chunk_start, chunk_end in _chunk_bounds(text, chunk_chars):
            members = []
            while position < len(order) and spans[order[position]][0] < chunk_end:
                members.append(order[position])
                position += 1
            if members:
                self._context_chunk(text, chunk_start, chunk_end, spans, members, flags)
        result = []
        for i, (start, _, _) in enumerate(spans):
            at = bisect.bisect_right(starts, start) - 1
            section = sections[at].category if at >= 0 and start < sections[at].end else None
            negated, uncertain, historical, hypothetical, family = flags[i] or (False,) * 5
            result.append(SpanContext(negated, uncertain, historical, hypothetical, family, section))
        return result, sections

    def sentences(self, text: str) -> list[tuple[int, int]]:
        """Character spans of the sentences of ``text``, by the splitter ConText's scope uses."""
        doc = self._nlp.get_pipe("ame_line_sentences")(self._nlp.make_doc(text))
        return [(s.start_char, s.end_char) for s in doc.sents if s.text.strip()]

    def _sections(self, text: str) -> list[SectionSpan]:
        doc = self._nlp.make_doc(text)
        doc = self._nlp.get_pipe("ame_line_sentences")(doc)
        doc.spans[SPAN_GROUP] = []
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"\[W036\]")
            doc = self._nlp.get_pipe("medspacy_sectionizer")(doc)
        sections = []
        for s in doc._.sections:
            if not s.category or s.body_end <= s.title_start:
                continue
            title = doc[s.title_start : s.title_end]
            last = doc[s.body_end - 1]
            sections.append(
                SectionSpan(
                    SECTION_NAMES.get(s.category, s.category),
                    title.text,
                    doc[s.title_start].idx,
                    max(last.idx + len(last), title.end_char if len(title) else 0),
                )
            )
        return sections

    def _context_chunk(
        self,
        text: str,
        chunk_start: int,
        chunk_end: int,
        spans: list[tuple[int, int, str]],
        members: list[int],
        flags: list[tuple[bool, bool, bool, bool, bool] | None],
    ) -> None:
        from spacy.tokens import Span

        doc = self._nlp.make_doc(text[chunk_start:chunk_end])
        doc = self._nlp.get_pipe("ame_line_sentences")(doc)
        group: list[Any] = []
        index: list[int] = []
        for i in members:
            start, end, label = spans[i]
            span = doc.char_span(
                start - chunk_start, min(end, chunk_end) - chunk_start, label=label, alignment_mode="expand"
            )
            if span is None or len(span) == 0:
                continue
            group.append(Span(doc, span.start, span.end, label=label))
            index.append(i)
        doc.spans[SPAN_GROUP] = group
        with warnings.catch_warnings():
            # medspaCy keeps a matcher per rule kind; an empty one (no regex rules) warns on every note
            warnings.filterwarnings("ignore", message=r"\[W036\]")
            doc = self._nlp.get_pipe("medspacy_context")(doc)
        for i, span in zip(index, doc.spans[SPAN_GROUP], strict=True):
            flags[i] = (
                bool(span._.is_negated),
                bool(span._.is_uncertain),
                bool(span._.is_historical),
                bool(span._.is_hypothetical),
                bool(span._.is_family),
            )


def _chunk_bounds(text: str, size: int) -> list[tuple[int, int]]:
    bounds = []
    start = 0
    while start < len(text):
        end = min(len(text), start + size)
        if end < len(text):
            # a line break followed by a line that does not continue a wrapped sentence
            cut = -1
            for m in _CHUNK_BREAK.finditer(text, start + size // 2, end):
                cut = m.end()
            if cut > start:
                end = cut
        bounds.append((start, end))
        start = end
    return bounds


_CHUNK_BREAK = re.compile(r"\n(?=\s*(?:[^a-z\s]|$))")
_SENTENCE_END = re.compile(r"[.!?;]$")
_DOTTED = re.compile(r"^[a-z](?:\.[a-z])+$")  # p.o, b.i.d, q.d, t.i.d (the tokenizer splits off the last dot)


def _line_sentences(doc: Any) -> Any:
    """Sentences end at . ! ? ; and at line breaks, except a wrapped line (the next starts lower case
    and the previous does not end a clause). Lists written one item per line stay separate."""

    import numpy
    from spacy.attrs import SENT_START

    starts = numpy.full((len(doc), 1), -1, dtype="int64")
    prev = None
    for i, token in enumerate(doc):
        start = i == 0
        if prev is not None:
            if token.is_space:
                start = False
            elif prev.text in {".", "!", "?", ";"}:
                # "mg p.o. b.i.d. with meals": a dotted abbreviation and the lower-case word after it
                # continue the sentence
                dotted = i >= 2 and bool(_DOTTED.match(doc[i - 2].text))
                start = not (
                    prev.text == "." and token.is_lower
                    and (len(token) < 4 or dotted or bool(_DOTTED.match(token.text)))
                )
            elif "\n" in prev.whitespace_ or (prev.is_space and "\n" in prev.text):
                start = not (token.is_lower and not _SENTENCE_END.search(prev.text) and prev.text not in {":", ","})
        starts[i, 0] = 1 if start else -1
        prev = token
    if len(doc):
        doc.from_array([SENT_START], starts.view("uint64"))  # spaCy stores -1 as a wrapped uint64
    return doc


def _context_rules(rule_cls: Any) -> list[Any]:
    rules = []
    for literal in _FAMILY_WORDS:
        rules.append(rule_cls(literal, "FAMILY", direction="BIDIRECTIONAL"))
    for literal in _NEGATION_FORWARD:
        rules.append(rule_cls(literal, "NEGATED_EXISTENCE", direction="FORWARD"))
    for literal in _NEGATION_BACKWARD:
        rules.append(rule_cls(literal, "NEGATED_EXISTENCE", direction="BACKWARD", max_scope=6))
    both = set(_POSSIBLE_FORWARD) & set(_POSSIBLE_BACKWARD)
    for literal in _POSSIBLE_FORWARD:
        if literal not in both:
            rules.append(rule_cls(literal, "POSSIBLE_EXISTENCE", direction="FORWARD"))
    for literal in _POSSIBLE_BACKWARD:
        if literal not in both:
            rules.append(rule_cls(literal, "POSSIBLE_EXISTENCE", direction="BACKWARD", max_scope=3))
    for literal in sorted(both):  # "pneumonia suspected" and "suspected pneumonia"
        rules.append(rule_cls(literal, "POSSIBLE_EXISTENCE", direction="BIDIRECTIONAL", max_scope=4))
    for literal in _HISTORICAL:
        rules.append(rule_cls(literal, "HISTORICAL", direction="FORWARD", max_scope=5))
    for literal in _HYPOTHETICAL:
        rules.append(rule_cls(literal, "HYPOTHETICAL", direction="FORWARD", max_scope=8))
    for literal in _TERMINATE:
        rules.append(rule_cls(literal, "TERMINATE", direction="TERMINATE"))
    for literal in _PSEUDO:
        rules.append(rule_cls(literal, "PSEUDO", direction="PSEUDO"))
    return rules


_DATED_TITLES = {
    "labs": ["labs", "lab", "laboratory", "lab results", "laboratory results", "admission labs"],
    "vitals": ["vitals", "vital signs", "vs"],
    "imaging": ["imaging", "ct", "mri", "cxr", "x-ray", "ultrasound", "echo"],
}


def _section_rules(rule_cls: Any) -> list[Any]:
    rules = []
    for category, titles in _EXTRA_SECTIONS.items():
        for title in titles:
            for suffix in (":", " :", "-"):
                rules.append(rule_cls(f"{title}{suffix}", category))
    # a title with a date or time before its colon: "Labs 03/04/2024:", "Vitals (0800):"
    for category, titles in _DATED_TITLES.items():
        for title in titles:
            words = [{"LOWER": w} for w in title.split()]
            pattern = [*words, {"TEXT": {"REGEX": r"^[\d/().:-]+$|^(?:on|at|from)$"}, "OP": "+"}, {"TEXT": ":"}]
            rules.append(rule_cls(f"{title} <date>:", category, pattern=pattern))
    return rules
