"""PhiScrubber: runs the detection layers, merges their spans and applies an operator."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ai_med_extract.agents.phi import patterns
from ai_med_extract.agents.phi.lexicon import Lexicon, load_lexicon
from ai_med_extract.agents.phi.merge import merge_spans
from ai_med_extract.agents.phi.names import NameFinder
from ai_med_extract.agents.phi.ner import NerBackend
from ai_med_extract.agents.phi.operators import OperatorEngine
from ai_med_extract.agents.phi.places import PlaceFinder
from ai_med_extract.agents.phi.tokens import Token, tokenize
from ai_med_extract.agents.phi.types import Operator, PhiLabel, PhiSpan, ScrubResult

ALL_LAYERS = frozenset({"patterns", "names", "places", "dictionary", "propagation", "ner"})


@dataclass(slots=True)
class ScrubOptions:
    layers: frozenset[str] = ALL_LAYERS
    keep_years: bool = False  # Safe Harbor allows a bare year; off by default (stricter)


class PhiScrubber:
    """Finds the 18 Safe Harbor identifier kinds and replaces them.

    Long documents are processed whole: the pattern, name and place layers scan the full text in
    linear time, and the NER layer only sees short windows around doubtful words, each cut at
    spaces inside one line, so no identifier is ever split between two model calls and nothing is
    truncated.

    Collaborators come in the constructor: the lexicon (dictionaries), an optional NER backend
    (spaCy) and the operator engine. ``PhiScrubber.default()`` builds the standard set.
    """

    def __init__(
        self,
        lexicon: Lexicon,
        ner: NerBackend | None = None,
        options: ScrubOptions | None = None,
        operators: OperatorEngine | None = None,
    ) -> None:
        self.lexicon = lexicon
        self.ner = ner
        self.options = options or ScrubOptions()
        self.names = NameFinder(lexicon)
        self.places = PlaceFinder(lexicon)
        self.operators = operators or OperatorEngine(first_names=lexicon.first_names)

    @classmethod
    def default(
        cls, *, ner: bool = True, options: ScrubOptions | None = None, secret: bytes | None = None
    ) -> PhiScrubber:
        backend = None
        if ner:
            from ai_med_extract.agents.phi.ner import SpacyNer

            candidate = SpacyNer()
            if candidate.is_available:
                backend = candidate
        lexicon = load_lexicon()
        return cls(lexicon, backend, options, OperatorEngine(secret, first_names=lexicon.first_names))

    # --- detection ---------------------------------------------------------------------------
    def detect(self, text: str) -> list[PhiSpan]:
        if not text:
            return []
        layers = self.options.layers
        spans: list[PhiSpan] = []
        toks = tokenize(text)
        if "patterns" in layers:
            spans.extend(patterns.find_all(text))
        if "names" in layers:
            spans.extend(self.names.find(text, toks))
        if "places" in layers:
            spans.extend(self.places.find(text, toks))
        if "dictionary" in layers:
            spans.extend(self.names.singles(text, toks))
        if "ner" in layers and self.ner is not None:
            spans.extend(self.ner.find(text, toks, self.lexicon, spans))
        if "propagation" in layers:
            spans.extend(self._propagate(text, toks, spans))
        if self.options.keep_years:
            spans = [s for s in spans if s.label is not PhiLabel.YEAR]
        return merge_spans(spans, text)

    def _propagate(self, text: str, toks: list[Token], spans: list[PhiSpan]) -> list[PhiSpan]:
        """A word found as a name or place anywhere in the document is PHI everywhere in it."""
        lx = self.lexicon
        found: dict[str, PhiLabel] = {}
        for s in spans:
            if s.label not in (PhiLabel.NAME, PhiLabel.LOCATION, PhiLabel.HOSPITAL) or s.score < 0.75:
                continue
            for m in re.finditer(r"[A-Za-z][A-Za-z'-]+", text[s.start : s.end]):
                low = m.group(0).lower()
                short = len(low) < 3 and not (s.detector == "cue.acronym" and len(low) == 2)
                if short or low in lx.english or low in lx.clinical or low in lx.stop or low in lx.drugs:
                    continue
                found.setdefault(low, s.label)
        if not found:
            return []
        return [
            PhiSpan(t.start, t.end, found[t.low], 0.7, "propagation")
            for t in toks
            if t.low in found and not text[t.end : t.end + 1].isdigit()
        ]

    # --- scrubbing ---------------------------------------------------------------------------
    def scrub(
        self, text: str, *, operator: Operator | str = Operator.redact, patient_key: str | None = None
    ) -> ScrubResult:
        op = Operator(operator)
        spans = self.detect(text)
        return self.operators.apply(text, spans, op, patient_key=patient_key)

