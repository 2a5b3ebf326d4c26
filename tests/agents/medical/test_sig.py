"""Medication instructions: strength, dose, unit, route, frequency, duration and PRN."""

from __future__ import annotations

import pytest

from ai_med_extract.agents.medical.sig import parse_sig


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        (" 500 mg PO BID", {"strength": "500 mg", "dose": 500, "unit": "mg", "route": "oral", "frequency": "BID"}),
        (" 10mg daily", {"dose": 10, "unit": "mg", "frequency": "QD"}),
        (" 81 MG BY MOUTH ONCE A DAY", {"dose": 81, "unit": "mg", "route": "oral", "frequency": "QD"}),
        (" 2 puffs inh q4-6h prn wheezing",
         {"dose": 2, "unit": "puff", "route": "inhalation", "frequency": "Q4-6H", "prn": True,
          "prn_reason": "wheezing"}),
        (" 0.4 mg SL every 5 minutes x3", {"dose": 0.4, "unit": "mg", "route": "sublingual"}),
        (" 30 units subcutaneous at bedtime", {"dose": 30, "unit": "unit", "route": "subcutaneous",
                                               "frequency": "QHS"}),
        (" 70 mg po weekly", {"dose": 70, "unit": "mg", "frequency": "QW"}),
        (" 500 mg po tid x 10 days", {"frequency": "TID", "duration": "10 day"}),
        (" 400 mg/5 mL, give 7.5 mL by mouth twice daily",
         {"strength": "400 mg/5 mL", "dose": 7.5, "unit": "mL", "frequency": "BID"}),
        (" 10,000 units subcut weekly", {"dose": 10000, "unit": "unit", "route": "subcutaneous"}),
        (" 20 daily", {"dose": 20, "unit": None, "frequency": "QD"}),
        (" 1 tab TID", {"dose": 1, "unit": "tablet", "frequency": "TID"}),
        (" 650 mg every 6 hours as needed for fever", {"frequency": "Q6H", "prn": True, "prn_reason": "fever"}),
        (" 1 g IV q12h for 2 weeks", {"dose": 1, "unit": "g", "route": "intravenous", "frequency": "Q12H",
                                      "duration": "2 week"}),
    ],
)
def test_sig_reads_each_attribute(window: str, expected: dict[str, object]) -> None:
    sig = parse_sig(window)
    for key, value in expected.items():
        assert getattr(sig, key) == value, (key, getattr(sig, key))


def test_sig_consumes_only_the_instruction_words() -> None:
    window = " 500 mg PO BID and something else"
    sig = parse_sig(window)
    assert window[: sig.end] == " 500 mg PO BID"


def test_sig_of_plain_words_is_empty() -> None:
    sig = parse_sig(" was stopped last year")
    assert (sig.strength, sig.dose, sig.frequency, sig.route, sig.prn) == (None, None, None, None, False)
