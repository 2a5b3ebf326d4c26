"""Operators: redact, mask, consistent surrogates, date shifting, reversible tokens."""

from __future__ import annotations

import re
from datetime import date

from ai_med_extract.agents.phi.operators import date_offset_days, shift_date_text
from ai_med_extract.agents.phi.scrubber import PhiScrubber

NOTE = (
    "Seen by Dr. Gillan on 7/22/1995. Daughter Susan Okafor called 410-555-9876.\n"
    "Dr. Gillan spoke with Susan again on 7/30/1995."
)


def test_redact_puts_a_label_tag_in_place_of_each_identifier(scrubber: PhiScrubber) -> None:
    out = scrubber.scrub(NOTE, operator="redact").text
    assert "[NAME]" in out and "[DATE]" in out and "[PHONE]" in out
    assert "Gillan" not in out and "7/22" not in out


def test_mask_keeps_length_and_hides_characters(scrubber: PhiScrubber) -> None:
    result = scrubber.scrub(NOTE, operator="mask")
    assert len(result.text) == len(NOTE)
    assert "Gillan" not in result.text and "*" * len("Gillan") in result.text


def test_scrub_replaces_the_same_name_with_the_same_surrogate(scrubber: PhiScrubber) -> None:
    out = scrubber.scrub(NOTE, operator="surrogate", patient_key="patient-7").text
    doctors = re.findall(r"Dr\. (\w+)", out)
    assert len(doctors) == 2 and doctors[0] == doctors[1] and doctors[0] != "Gillan"
    # and the same in another document of the same patient
    other = scrubber.scrub("Dr. Gillan called.", operator="surrogate", patient_key="patient-7").text
    assert other == f"Dr. {doctors[0]} called."


def test_surrogates_differ_between_patients(scrubber: PhiScrubber) -> None:
    names = {
        scrubber.scrub("Dr. Gillan called.", operator="surrogate", patient_key=f"p{i}").text for i in range(5)
    }
    assert len(names) > 1


def test_date_shift_preserves_intervals_within_a_patient(scrubber: PhiScrubber) -> None:
    out = scrubber.scrub(NOTE, operator="surrogate", patient_key="patient-7").text
    shifted = [date(int(y), int(m), int(d)) for m, d, y in re.findall(r"(\d{1,2})/(\d{1,2})/(\d{4})", out)]
    assert len(shifted) == 2
    assert (shifted[1] - shifted[0]).days == 8
    assert shifted[0] != date(1995, 7, 22)


def test_date_shift_keeps_the_written_form() -> None:
    assert shift_date_text("7/22", -10) == "7/12"
    assert shift_date_text("2021-03-05", -5) == "2021-02-28"
    assert shift_date_text("March 3rd", 2) == "March 5"
    assert shift_date_text("3-12-99", 1) == "3-13-99"
    assert shift_date_text("not a date", 3) is None
    assert -395 <= date_offset_days(b"s", "p1") <= -30


def test_reversible_tokens_map_back_to_the_originals(scrubber: PhiScrubber) -> None:
    result = scrubber.scrub(NOTE, operator="reversible")
    tokens = re.findall(r"\[[A-Z_]+-[0-9a-f]{8}\]", result.text)
    assert tokens and set(tokens) <= set(result.mapping)
    restored = re.sub(r"\[[A-Z_]+-[0-9a-f]{8}\]", lambda m: result.mapping[m.group(0)], result.text)
    assert restored == NOTE


def test_spans_carry_offsets_into_the_input(scrubber: PhiScrubber) -> None:
    result = scrubber.scrub(NOTE, operator="surrogate", patient_key="x")
    for s in result.spans:
        assert 0 <= s.start < s.end <= len(NOTE)
        assert s.detector and 0 < s.score <= 1
    assert NOTE[result.spans[0].start : result.spans[0].end] == "Gillan"
