"""Context layers for PHI with no title cue: name positions, three-word names on lines without case,
employers, whose house, odd place names after "lives in", slipped date separators; each with hard
negatives (drug names, eponyms, lab abbreviations, clinical shorthand)."""

from __future__ import annotations

import pytest

from ai_med_extract.agents.phi.scrubber import PhiScrubber
from ai_med_extract.agents.phi.types import PhiLabel


def labelled(scrubber: PhiScrubber, text: str) -> dict[str, str]:
    """Each word of the text that lies inside a detected span, with that span's label."""
    out: dict[str, str] = {}
    for s in scrubber.detect(text):
        for word in text[s.start : s.end].split():
            out[word.strip(".,;:")] = str(s.label)
    return out


@pytest.mark.parametrize(
    ("text", "words", "label"),
    [
        # a first name as the subject of "visited"/"called", or the object of "spoke with"/"per"/"paged"
        ("social: tom visited during the evening, no concerns.", ["tom"], PhiLabel.NAME),
        ("SOCIAL: TOM VISITED THIS EVENING", ["TOM"], PhiLabel.NAME),
        ("Plan discussed, gwendolyn called and was updated.", ["gwendolyn"], PhiLabel.NAME),
        ("spoke with ellen about plan of care and dispo today", ["ellen"], PhiLabel.NAME),
        ("per gwendolyn, pt was confused at home last week", ["gwendolyn"], PhiLabel.NAME),
        # three name words in a row on a line without case
        ("pt alert, oriented x3. anne josephine wrzesniak from speech therapy in to see pt",
         ["anne", "josephine", "wrzesniak"], PhiLabel.NAME),
        # a relative's unusual name ending a clause on a lowercase line
        ("long talk with the family today. communication with husband dragoslav.\n", ["dragoslav"], PhiLabel.NAME),
        # employers and companies
        ("SOCIAL: MARRIED. HUSBAND CEO OF ZENTRIX. SMOKER 30PK/YR.", ["ZENTRIX"], PhiLabel.LOCATION),
        ("She works for Brightwell Logistics as a clerk.", ["Brightwell", "Logistics"], PhiLabel.LOCATION),
        ("retired from Halvorsen Corp last year", ["Halvorsen"], PhiLabel.LOCATION),
        ("Employer: Ostrander Inc, full time", ["Ostrander"], PhiLabel.LOCATION),
        ("hospice care co.- bright meadows will be assessing pt", ["bright", "meadows"], PhiLabel.LOCATION),
        # whose house it is
        ('asked where he was, stated "at gerald plimpton\'s house."', ["gerald", "plimpton"], PhiLabel.LOCATION),
        # "lives ... in <place>", the place an odd word or an uncommon proper noun
        ("social: lives alone in north brookfeld, son lives close by", ["north", "brookfeld"], PhiLabel.LOCATION),
        # notes in ALL CAPS or all lowercase, where letter case says nothing
        ("INCISION OOZING. E. WROBLEWSKI NP AWARE AND EVALUATED.", ["E", "WROBLEWSKI"], PhiLabel.NAME),
        ("REPORTED TO K. OSTERHAGEN. COAGS OK.", ["K", "OSTERHAGEN"], PhiLabel.NAME),
        ("NOTIFIED WOUND NURSE, THEODORA KRZYZANOWSKI, OF DECUBITUS", ["THEODORA"], PhiLabel.NAME),
        ("SOCIAL: MOTHER, HELENA VANDERSLOOT, CALLED THIS AM", ["HELENA", "VANDERSLOOT"], PhiLabel.NAME),
        ("KEEP SBP 130-140 WITH LABETOLOL GTT. MARIA KOWALCZYK, RN\n", ["MARIA", "KOWALCZYK"], PhiLabel.NAME),
        ("PLACED ON SERVO VENT.\nBERNARD FOLEY CRT\n", ["BERNARD", "FOLEY"], PhiLabel.NAME),
        ("WAS ACCEPTED BY ST. AGNES BUT CANNOT LEAVE UNTIL AM", ["ST", "AGNES"], PhiLabel.HOSPITAL),
        ("TEAM TO CONTACT OTHER FAMILY MEMBERS IN SAN DIEGO.", ["SAN", "DIEGO"], PhiLabel.LOCATION),
        ("daughter will return to baltimore tomorrow with the kids", ["baltimore"], PhiLabel.LOCATION),
        ("thrombus in rca this afternoon. to gh cath lab for ptca", ["gh"], PhiLabel.HOSPITAL),
        ("lives alone in elderly housing at 7 birch st. in ashcombe. dtr is her only child",
         ["7", "birch", "st"], PhiLabel.ADDRESS),
        ("LIVES ALONE IN ELDERLY HOUSING AT 7 BIRCH ST. IN ASHCOMBE. DTR VISITS", ["ASHCOMBE"], PhiLabel.LOCATION),
        ("lives in senior housing at 12 Elm St. in Ashcombe. Daughter visits.", ["Ashcombe"], PhiLabel.LOCATION),
    ],
)  # fmt: skip
def test_context_layers_find_phi_without_a_title(
    scrubber: PhiScrubber, text: str, words: list[str], label: PhiLabel
) -> None:
    found = labelled(scrubber, text)
    assert {w: found.get(w) for w in words} == {w: str(label) for w in words}


@pytest.mark.parametrize(
    ("text", "value"),
    [("11/21.93 \nneuro: pt alert, oriented", "11/21.93"), ("seen in clinic 3/4.2001 for f/u", "3/4.2001")],
)
def test_dates_with_a_slipped_separator_are_dates(scrubber: PhiScrubber, text: str, value: str) -> None:
    start = text.index(value)
    assert any(s.start <= start and start + len(value) <= s.end and s.label is PhiLabel.DATE
               for s in scrubber.detect(text))  # fmt: skip


@pytest.mark.parametrize(
    "text",
    [
        "Plan: recheck HbA1c in three months",
        "plan: check A1C, TSH and B12 in am",
        "PLAN: FOLLOW CD4 AND SPO2",
        "given 1/2.5 mg ativan for agitation",
        "HEP INC TO 700U/HR. WO CO SOB. LAST CO 9.0 WITH CI>5",
        "Thermodilution CO 11.18 with ci 3.2",
        "pt called out for pain, medicated with morphine",
        "family visited, updated on plan",
        "lasix given; will called back with results",
        "per protocol heparin held for procedure",
        "spoke with pharmacy about vancomycin dosing",
        "went home to her daughter's house after rehab",
        "lives in a group home, walks with cane",
        "Patient works at home as a writer.",
        "Hx of Parkinson's disease; Foley draining; Bell's palsy resolved",
        "OOB TO CH WITH 2 ASSIST. QUADRIPLEGIC FROM MVA IN THE PAST",
        "oob to ch with 2 assist, tolerated well, back to bed at noon",
        "EKG: ST ELEVATION IN V2-V4, ST DEPRESSION LATERALLY",
        "HOME MEDS INCLUDE ST. JOHN'S WORT AND FISH OIL DAILY",
        "NURSE AWARE OF BP. CHARGE NURSE NOTIFIED. ON 2L NP SATS 97%",
        "REPORTED TO MD. AWARE OF LABS, WILL FOLLOW",
        "given 2 units ffp at 19 ml st. ok",
        "lives in assisted living, independent in adls.",
        "lives with wife, in good spirits, up in chair.",
    ],
)
def test_context_layers_leave_clinical_text_alone(scrubber: PhiScrubber, text: str) -> None:
    assert labelled(scrubber, text) == {}
