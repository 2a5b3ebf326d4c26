"""Clinical context (medspaCy ConText) and note sections (medspaCy Sectionizer).

Built once per agent: ``ClinicalContext()`` creates the spaCy pipeline (tokenizer, a line-aware
sentence splitter, ConText with the default rules plus ours, the sectionizer with the default rules
plus ours). ``annotate(text, spans)`` tokenises the text, attaches the candidate spans as a span group,
runs ConText and the sectionizer, and returns per-span context flags and the section list.
"""

from __future__ import annotations

import re
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
           "history of present illness", "history:", "past history", "clinical history", "no change",
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
        import warnings

        import spacy
        from medspacy.context import ConText, ConTextRule  # noqa: F401  (registers the factory)
        from medspacy.custom_tokenizer import create_medspacy_tokenizer
        from medspacy.section_detection import Sectionizer, SectionRule  # noqa: F401

        # medspaCy keeps a matcher per rule kind; an empty one (no regex rules) warns on every note
        warnings.filterwarnings("ignore", message=r"\[W036\]", category=UserWarning)
        nlp = spacy.blank("en")
        nlp.tokenizer = create_medspacy_tokenizer(nlp)
        if not spacy.language.Language.has_factory("ame_line_sentences"):
            spacy.language.Language.component("ame_line_sentences", func=_line_sentences)
        nlp.add_pipe("ame_line_sentences")
        context = nlp.add_pipe(
            "medspacy_context",
            config={"input_span_type": "group", "span_group_name": SPAN_GROUP},
        )
        context.add(_context_rules(ConTextRule))
        sectionizer = nlp.add_pipe(
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
        self, text: str, spans: list[tuple[int, int, str]]
    ) -> tuple[list[SpanContext], list[SectionSpan]]:
        """Context for each (start, end, label) span, and the note's sections."""

        from spacy.tokens import Span

        doc = self._nlp.make_doc(text)
        doc = self._nlp.get_pipe("ame_line_sentences")(doc)
        group: list[Any] = []
        index: list[int] = []
        for i, (start, end, label) in enumerate(spans):
            span = doc.char_span(start, end, label=label, alignment_mode="expand")
            if span is None or len(span) == 0:
                continue
            group.append(Span(doc, span.start, span.end, label=label))
            index.append(i)
        doc.spans[SPAN_GROUP] = group
        doc = self._nlp.get_pipe("medspacy_context")(doc)
        doc = self._nlp.get_pipe("medspacy_sectionizer")(doc)

        sections = []
        for s in doc._.sections:
            if not s.category:
                continue
            title = doc[s.title_start : s.title_end]
            body_end = doc[s.body_end - 1].idx + len(doc[s.body_end - 1]) if s.body_end > s.title_start else 0
            sections.append(
                SectionSpan(
                    SECTION_NAMES.get(s.category, s.category),
                    title.text,
                    doc[s.title_start].idx if len(doc) else 0,
                    max(body_end, title.end_char if len(title) else 0),
                )
            )
        result = [SpanContext(False, False, False, False, False, None)] * len(spans)
        for i, span in zip(index, doc.spans[SPAN_GROUP], strict=True):
            section = span._.section.category if span._.section is not None else None
            result[i] = SpanContext(
                negated=bool(span._.is_negated),
                uncertain=bool(span._.is_uncertain),
                historical=bool(span._.is_historical),
                hypothetical=bool(span._.is_hypothetical),
                family=bool(span._.is_family),
                section=SECTION_NAMES.get(section, section) if section else None,
            )
        return result, sections


_SENTENCE_END = re.compile(r"[.!?;]$")


def _line_sentences(doc: Any) -> Any:
    """Sentences end at . ! ? ; and at line breaks, except a wrapped line (the next starts lower case
    and the previous does not end a clause). Lists written one item per line stay separate."""

    for i, token in enumerate(doc):
        if i == 0:
            token.is_sent_start = True
            continue
        prev = doc[i - 1]
        start = False
        if prev.text in {".", "!", "?", ";"} and not (prev.text == "." and token.is_lower and len(token) < 4):
            start = True
        elif "\n" in prev.whitespace_ or prev.is_space and "\n" in prev.text:
            start = not (token.is_lower and not _SENTENCE_END.search(prev.text) and prev.text not in {":", ","})
        elif prev.is_space and "\n" in prev.text:
            start = True
        if token.is_space:
            start = False
        token.is_sent_start = start
    return doc


def _context_rules(rule_cls: Any) -> list[Any]:
    rules = []
    for literal in _FAMILY_WORDS:
        rules.append(rule_cls(literal, "FAMILY", direction="BIDIRECTIONAL"))
    for literal in _NEGATION_FORWARD:
        rules.append(rule_cls(literal, "NEGATED_EXISTENCE", direction="FORWARD"))
    for literal in _NEGATION_BACKWARD:
        rules.append(rule_cls(literal, "NEGATED_EXISTENCE", direction="BACKWARD", max_scope=6))
    for literal in _POSSIBLE_FORWARD:
        rules.append(rule_cls(literal, "POSSIBLE_EXISTENCE", direction="FORWARD"))
    for literal in _POSSIBLE_BACKWARD:
        rules.append(rule_cls(literal, "POSSIBLE_EXISTENCE", direction="BACKWARD", max_scope=3))
    for literal in _HISTORICAL:
        rules.append(rule_cls(literal, "HISTORICAL", direction="FORWARD", max_scope=5))
    for literal in _HYPOTHETICAL:
        rules.append(rule_cls(literal, "HYPOTHETICAL", direction="FORWARD", max_scope=8))
    for literal in _TERMINATE:
        rules.append(rule_cls(literal, "TERMINATE", direction="TERMINATE"))
    for literal in _PSEUDO:
        rules.append(rule_cls(literal, "PSEUDO", direction="PSEUDO"))
    return rules


def _section_rules(rule_cls: Any) -> list[Any]:
    rules = []
    for category, titles in _EXTRA_SECTIONS.items():
        for title in titles:
            for suffix in (":", " :", "-"):
                rules.append(rule_cls(f"{title}{suffix}", category))
    return rules
