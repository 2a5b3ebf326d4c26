"""The learned detector: the shipped model agrees with its training recipe, runs in the default path,
and finds the identifiers of the kinds of text the rules missed (examples written for this project)."""

from __future__ import annotations

import re

import pytest

from ai_med_extract.agents.phi import learned
from ai_med_extract.agents.phi.scrubber import PhiScrubber

# (text, words that are PHI, words that are not)
EXAMPLES = [
    ("Patient: Maria Gonzalez", ["Maria", "Gonzalez"], ["Patient"]),
    ("My name is Oluwaseun and I am calling about my mother.", ["Oluwaseun"], ["calling", "mother"]),
    ("Tel: 33-71-42-90 (home)", ["33", "71", "42", "90"], ["Tel", "home"]),
    ("Address: Jana Novakova, Hlavni 12, 602 00 Brno", ["Jana", "Novakova", "Hlavni", "12", "602", "00", "Brno"], ["Address"]),
    ("She lives at Avenida Paulista 900, Sao Paulo.", ["Avenida", "Paulista", "900", "Sao", "Paulo"], ["She", "lives"]),
    ("Priya: Did you call Tomasz about the results?", ["Priya", "Tomasz"], ["call", "results"]),
]


@pytest.fixture(scope="module")
def default_scrubber() -> PhiScrubber:
    return PhiScrubber.default(ner=True, secret=b"k" * 32)


def test_shipped_model_was_built_by_the_current_training_recipe() -> None:
    shipped = learned.shipped_fingerprint()
    assert shipped is not None, "agents/phi/model/meta.json is missing: run `make phi-model`"
    assert shipped == learned.training_fingerprint(), (
        "the shipped model and the training config/generator/seed disagree: run `make phi-model`"
    )


def test_fingerprint_changes_with_the_training_config() -> None:
    text = learned.CONFIG_PATH.read_text("utf-8")
    assert learned.training_fingerprint(text) != learned.training_fingerprint(text.replace("width = 64", "width = 96"))


def test_the_learned_recognizer_is_in_the_default_path(default_scrubber: PhiScrubber) -> None:
    assert "learned" in default_scrubber.registry.names
    text = "Spoke with Wojciech Brzezinski at 14:30, he will bring the forms."
    spans = default_scrubber.detect(text)
    assert any(s.recognizer == "learned" for s in spans)


@pytest.mark.parametrize(("text", "phi", "clean"), EXAMPLES, ids=[e[0][:24] for e in EXAMPLES])
def test_examples_the_rules_missed_are_scrubbed(
    default_scrubber: PhiScrubber, text: str, phi: list[str], clean: list[str]
) -> None:
    spans = default_scrubber.detect(text)

    def covered(word: str) -> bool:
        m = re.search(rf"\b{re.escape(word)}\b", text)
        assert m is not None
        return any(s.start < m.end() and m.start() < s.end for s in spans)

    assert [w for w in phi if not covered(w)] == []
    assert [w for w in clean if covered(w)] == []


def test_clinical_words_stay_on_every_token_pass(default_scrubber: PhiScrubber) -> None:
    text = "Hx of Parkinson's disease and Crohn's disease. Foley catheter placed. Metoprolol 25 mg BID, GCS 15."
    found = [text[s.start : s.end] for s in default_scrubber.detect(text)]
    assert found == []


def test_hyphenated_clinical_words_are_explained_part_by_part() -> None:
    from ai_med_extract.agents.phi.lexicon import load_lexicon
    from ai_med_extract.agents.phi.types import PhiLabel

    lx = load_lexicon()
    assert not learned.keep("Insulin drip- titrate", PhiLabel.NAME, lx)
    assert not learned.keep("re-infusing", PhiLabel.HOSPITAL, lx)
    assert learned.keep("Anna Smith-Jones", PhiLabel.NAME, lx)


def test_charting_shorthand_is_left_alone(default_scrubber: PhiScrubber) -> None:
    text = (
        "Neuro: alert, MAE x4, PERRLA. CV- SR 60s-70s, rare PACs, K 3.9.\n"
        "Resp: LS diminished RLL, 3L NC, sats 93%. GI/GU: abd soft, +flatus, Foley draining amber.\n"
        "Access: R IJ cordis, PIV x1. Plan: Lasix 40mg IV, am labs, OOB as tol.\n"
    )
    found = [text[s.start : s.end] for s in default_scrubber.detect(text)]
    assert found == []
