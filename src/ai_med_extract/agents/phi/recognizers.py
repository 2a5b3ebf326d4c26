"""The scrubber's detection layers as a registry of recognizers (presidio's RecognizerRegistry idea).

Each recognizer has a ``name``, a ``weight`` (its spans' scores are multiplied by it) and finds spans
in a :class:`DetectionContext`. Recognizers run in registry order; a later one sees the spans the
earlier ones found (the NER and propagation layers use them). Every span is tagged with the name of
the recognizer that found it. A deployment adds, weights or disables recognizers by configuration
(``PhiSettings.recognizers``) or in code (:meth:`RecognizerRegistry.add`).
"""

from __future__ import annotations

import importlib
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from ai_med_extract.agents.phi import patterns
from ai_med_extract.agents.phi.types import PhiLabel, PhiSpan

if TYPE_CHECKING:
    from ai_med_extract.agents.phi.lexicon import Lexicon
    from ai_med_extract.agents.phi.names import NameFinder
    from ai_med_extract.agents.phi.ner import NerBackend
    from ai_med_extract.agents.phi.places import PlaceFinder
    from ai_med_extract.agents.phi.tokens import Token


@dataclass(slots=True)
class DetectionContext:
    """What a recognizer sees: the text, its word tokens, and the spans found so far."""

    text: str
    toks: list[Token]
    lexicon: Lexicon
    found: list[PhiSpan] = field(default_factory=list)


class Recognizer(ABC):
    """One detection layer. ``is_available`` is false when an optional backend is missing."""

    name: str = "recognizer"
    weight: float = 1.0

    @property
    def is_available(self) -> bool:
        return True

    @abstractmethod
    def find(self, ctx: DetectionContext) -> Iterable[PhiSpan]: ...


class PatternRecognizer(Recognizer):
    """Identifiers with a recognisable shape: dates, phones, emails, IDs validated by checksums."""

    name = "patterns"

    def find(self, ctx: DetectionContext) -> Iterable[PhiSpan]:
        return patterns.find_all(ctx.text)


class NameRecognizer(Recognizer):
    """Names found by titles, relations, signatures and name positions."""

    name = "names"

    def __init__(self, names: NameFinder) -> None:
        self.names = names

    def find(self, ctx: DetectionContext) -> Iterable[PhiSpan]:
        return self.names.find(ctx.text, ctx.toks)


class PlaceRecognizer(Recognizer):
    """Towns, streets, hospitals and employers found by cues and the gazetteer."""

    name = "places"

    def __init__(self, places: PlaceFinder) -> None:
        self.places = places

    def find(self, ctx: DetectionContext) -> Iterable[PhiSpan]:
        return self.places.find(ctx.text, ctx.toks)


class DictionaryRecognizer(Recognizer):
    """Single words that are dictionary names and nothing else."""

    name = "dictionary"

    def __init__(self, names: NameFinder) -> None:
        self.names = names

    def find(self, ctx: DetectionContext) -> Iterable[PhiSpan]:
        return self.names.singles(ctx.text, ctx.toks)


class NerRecognizer(Recognizer):
    """A general-purpose NER model run on the windows the cheap layers leave in doubt."""

    name = "ner"

    def __init__(self, backend: NerBackend | None) -> None:
        self.backend = backend

    @property
    def is_available(self) -> bool:
        return self.backend is not None

    def find(self, ctx: DetectionContext) -> Iterable[PhiSpan]:
        if self.backend is None:
            return []
        return self.backend.find(ctx.text, ctx.toks, ctx.lexicon, ctx.found)


class PropagationRecognizer(Recognizer):
    """A word found as a name or place anywhere in the document is PHI everywhere in it."""

    name = "propagation"

    def find(self, ctx: DetectionContext) -> Iterable[PhiSpan]:
        lx, text = ctx.lexicon, ctx.text
        found: dict[str, PhiLabel] = {}
        for s in ctx.found:
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
            for t in ctx.toks
            if t.low in found and not text[t.end : t.end + 1].isdigit()
        ]


@dataclass(frozen=True, slots=True)
class RecognizerConfig:
    """Configuration of the registry: which recognizers run and how much each one counts."""

    disabled: frozenset[str] = frozenset()
    weights: Mapping[str, float] = field(default_factory=dict)
    extra: tuple[str, ...] = ()  # "package.module:ClassName" of Recognizer subclasses built with no arguments
    min_score: float = 0.0  # spans scoring below this (after weighting) are dropped


def load_recognizer(path: str) -> Recognizer:
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ValueError("a recognizer is named as 'package.module:ClassName'")
    cls = getattr(importlib.import_module(module_name), attr)
    if not (isinstance(cls, type) and issubclass(cls, Recognizer)):
        raise TypeError("not a Recognizer subclass")
    return cls()


class RecognizerRegistry:
    """The ordered recognizers the scrubber runs."""

    def __init__(self, recognizers: Iterable[Recognizer] = ()) -> None:
        self._recognizers: list[Recognizer] = []
        for r in recognizers:
            self.add(r)

    def add(self, recognizer: Recognizer, *, before: str | None = None) -> None:
        if any(r.name == recognizer.name for r in self._recognizers):
            raise ValueError(f"a recognizer named {recognizer.name!r} is already registered")
        if before is None:
            self._recognizers.append(recognizer)
            return
        names = self.names
        self._recognizers.insert(names.index(before) if before in names else len(names), recognizer)

    def remove(self, name: str) -> None:
        self._recognizers = [r for r in self._recognizers if r.name != name]

    def get(self, name: str) -> Recognizer | None:
        return next((r for r in self._recognizers if r.name == name), None)

    @property
    def names(self) -> list[str]:
        return [r.name for r in self._recognizers]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._recognizers)

    def configure(self, config: RecognizerConfig) -> None:
        for path in config.extra:
            self.add(load_recognizer(path), before="propagation")
        for name in config.disabled:
            self.remove(name)
        for name, weight in config.weights.items():
            r = self.get(name)
            if r is not None:
                r.weight = weight

    def run(self, ctx: DetectionContext, enabled: frozenset[str] | None = None, min_score: float = 0.0) -> list[PhiSpan]:
        """Every span of every enabled recognizer, weighted and tagged with its recognizer's name."""
        for r in self._recognizers:
            if (enabled is not None and r.name not in enabled) or not r.is_available:
                continue
            for s in r.find(ctx):
                score = min(1.0, s.score * r.weight) if r.weight != 1.0 else s.score
                if score < min_score:
                    continue
                ctx.found.append(replace(s, score=score, recognizer=r.name))
        return ctx.found
