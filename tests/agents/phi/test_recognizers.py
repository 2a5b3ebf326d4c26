"""The recognizer registry: each layer a named recognizer that configuration can weight, disable or add."""

from __future__ import annotations

import re
from collections.abc import Iterable

import pytest

from ai_med_extract.agents.phi.agent import PhiAgent
from ai_med_extract.agents.phi.lexicon import load_lexicon
from ai_med_extract.agents.phi.recognizers import DetectionContext, Recognizer, RecognizerConfig
from ai_med_extract.agents.phi.scrubber import PhiScrubber, ScrubOptions, default_registry
from ai_med_extract.agents.phi.types import PhiLabel, PhiSpan
from ai_med_extract.config import PhiSettings

NOTE = "Seen by Dr. Gillan on 7/22/1995. Daughter Susan called 410-555-9876 from Baltimore."


class WardRecognizer(Recognizer):
    """A deployment's own recognizer: ward codes such as 'W-12B'."""

    name = "ward"

    def find(self, ctx: DetectionContext) -> Iterable[PhiSpan]:
        for m in re.finditer(r"\bW-\d{2}[A-Z]\b", ctx.text):
            yield PhiSpan(m.start(), m.end(), PhiLabel.ID, 0.9, "ward.code")


def test_every_span_names_the_recognizer_that_found_it(scrubber: PhiScrubber) -> None:
    spans = scrubber.detect(NOTE)
    by_text = {NOTE[s.start : s.end]: s for s in spans}
    assert by_text["7/22/1995"].recognizer == "patterns"
    assert by_text["Gillan"].recognizer == "names"
    assert all(s.recognizer in scrubber.registry.names for s in spans)
    assert all(s.to_dict()["recognizer"] == s.recognizer for s in spans)


def test_a_disabled_recognizer_finds_nothing() -> None:
    lexicon = load_lexicon()
    registry = default_registry(lexicon)
    registry.configure(RecognizerConfig(disabled=frozenset({"patterns"})))
    spans = PhiScrubber(lexicon, registry=registry).detect(NOTE)
    assert "patterns" not in registry.names
    assert not any(NOTE[s.start : s.end] == "410-555-9876" for s in spans)
    assert any(NOTE[s.start : s.end] == "Gillan" for s in spans)


def test_weights_scale_scores_and_min_score_drops_weak_spans(scrubber: PhiScrubber) -> None:
    lexicon = load_lexicon()
    registry = default_registry(lexicon)
    registry.configure(RecognizerConfig(weights={"patterns": 0.5}))
    weighted = PhiScrubber(lexicon, registry=registry).detect(NOTE)
    plain = {(s.start, s.end): s.score for s in scrubber.detect(NOTE) if s.recognizer == "patterns"}
    for s in weighted:
        if s.recognizer == "patterns":
            assert s.score == pytest.approx(plain[(s.start, s.end)] * 0.5)
    strict = PhiScrubber(lexicon, registry=registry, options=ScrubOptions(min_score=0.6)).detect(NOTE)
    assert not any(s.recognizer == "patterns" for s in strict)


def test_settings_add_a_recognizer_by_its_import_path() -> None:
    settings = PhiSettings(
        ner=False, recognizers={"extra": ["tests.agents.phi.test_recognizers:WardRecognizer"], "disabled": ["learned"]}
    )
    agent = PhiAgent.from_settings(b"k" * 32, settings)
    text = "Moved to W-12B after review by Dr. Gillan."
    spans = agent.scrubber.detect(text)
    assert "ward" in agent.scrubber.registry.names and "learned" not in agent.scrubber.registry.names
    assert any(text[s.start : s.end] == "W-12B" and s.recognizer == "ward" for s in spans)
    assert "W-12B" not in agent.scrub(text).text


def test_a_recognizer_path_that_is_not_a_recognizer_is_refused() -> None:
    registry = default_registry(load_lexicon())
    with pytest.raises(TypeError):
        registry.configure(RecognizerConfig(extra=("ai_med_extract.agents.phi.types:PhiSpan",)))
    with pytest.raises(ValueError):
        registry.configure(RecognizerConfig(extra=("no_colon_here",)))
