"""PhiScrubber: runs the detection layers, merges their spans and applies an operator."""

from __future__ import annotations

from dataclasses import dataclass

from ai_med_extract.agents.phi.lexicon import Lexicon, load_lexicon
from ai_med_extract.agents.phi.merge import merge_spans
from ai_med_extract.agents.phi.names import NameFinder
from ai_med_extract.agents.phi.ner import NerBackend
from ai_med_extract.agents.phi.operators import OperatorEngine
from ai_med_extract.agents.phi.places import PlaceFinder
from ai_med_extract.agents.phi.recognizers import (
    DetectionContext,
    DictionaryRecognizer,
    NameRecognizer,
    NerRecognizer,
    PatternRecognizer,
    PlaceRecognizer,
    PropagationRecognizer,
    Recognizer,
    RecognizerConfig,
    RecognizerRegistry,
)
from ai_med_extract.agents.phi.tokens import tokenize
from ai_med_extract.agents.phi.types import Operator, PhiLabel, PhiSpan, ScrubResult

ALL_LAYERS = frozenset({"patterns", "names", "places", "dictionary", "learned", "ner", "propagation"})


@dataclass(slots=True)
class ScrubOptions:
    layers: frozenset[str] | None = None  # names of the recognizers to run; None: every registered one
    keep_years: bool = False  # Safe Harbor allows a bare year; off by default (stricter)
    min_score: float = 0.0  # spans scoring below this (after each recognizer's weight) are dropped


def default_registry(
    lexicon: Lexicon, ner: NerBackend | None = None, learned: Recognizer | None = None
) -> RecognizerRegistry:
    """The standard recognizers, in the order they run (later ones see earlier ones' spans): the
    high-precision rule layers, the learned detector on every token, the general NER model on what
    is still in doubt, then propagation of every name and place found."""
    names = NameFinder(lexicon)
    recognizers: list[Recognizer] = [
        PatternRecognizer(),
        NameRecognizer(names),
        PlaceRecognizer(PlaceFinder(lexicon)),
        DictionaryRecognizer(names),
    ]
    if learned is not None:
        recognizers.append(learned)
    recognizers += [NerRecognizer(ner), PropagationRecognizer()]
    return RecognizerRegistry(recognizers)


class PhiScrubber:
    """Finds the 18 Safe Harbor identifier kinds and replaces them.

    Detection is a :class:`RecognizerRegistry`: patterns, names, places, dictionary, the learned
    detector (every token), NER and propagation by default, each a recognizer a deployment can weight or disable. Long documents are
    processed whole: the pattern, name and place layers scan the full text in linear time, and the
    NER layer only sees short windows around doubtful words, each cut at spaces inside one line, so
    no identifier is ever split between two model calls and nothing is truncated.

    Collaborators come in the constructor: the lexicon (dictionaries), an optional NER backend
    (spaCy) or a whole registry, and the operator engine. ``PhiScrubber.default()`` builds the
    standard set.
    """

    def __init__(
        self,
        lexicon: Lexicon,
        ner: NerBackend | None = None,
        options: ScrubOptions | None = None,
        operators: OperatorEngine | None = None,
        registry: RecognizerRegistry | None = None,
    ) -> None:
        self.lexicon = lexicon
        self.ner = ner
        self.options = options or ScrubOptions()
        self.registry = registry or default_registry(lexicon, ner)
        self.operators = operators or OperatorEngine(first_names=lexicon.first_names)

    @classmethod
    def default(
        cls,
        *,
        ner: bool = True,
        options: ScrubOptions | None = None,
        secret: bytes | None = None,
        recognizers: RecognizerConfig | None = None,
        learned: bool = True,
    ) -> PhiScrubber:
        """The standard scrubber: rule layers, the shipped learned detector (when its model is
        installed) and, with ``ner``, the general-purpose spaCy model on doubtful windows."""
        from ai_med_extract.agents.phi.learned import LearnedRecognizer

        backend = None
        if ner:
            from ai_med_extract.agents.phi.ner import SpacyNer

            candidate = SpacyNer()
            if candidate.is_available:
                backend = candidate
        lexicon = load_lexicon()
        detector = LearnedRecognizer() if learned else None
        registry = default_registry(lexicon, backend, detector if detector and detector.is_available else None)
        if recognizers is not None:
            registry.configure(recognizers)
            if recognizers.min_score and options is None:
                options = ScrubOptions(min_score=recognizers.min_score)
        return cls(lexicon, backend, options, OperatorEngine(secret, first_names=lexicon.first_names), registry)

    # --- detection ---------------------------------------------------------------------------
    def detect(self, text: str) -> list[PhiSpan]:
        if not text:
            return []
        ctx = DetectionContext(text, tokenize(text), self.lexicon)
        spans = self.registry.run(ctx, self.options.layers, self.options.min_score)
        if self.options.keep_years:
            spans = [s for s in spans if s.label is not PhiLabel.YEAR]
        return merge_spans(spans, text)

    # --- scrubbing ---------------------------------------------------------------------------
    def scrub(
        self, text: str, *, operator: Operator | str = Operator.redact, patient_key: str | None = None
    ) -> ScrubResult:
        op = Operator(operator)
        spans = self.detect(text)
        return self.operators.apply(text, spans, op, patient_key=patient_key)

