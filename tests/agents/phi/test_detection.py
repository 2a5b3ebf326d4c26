"""Detection per identifier kind, hard negatives, casing, long and unusual input."""

from __future__ import annotations

import pytest

from ai_med_extract.agents.phi.scrubber import PhiScrubber
from ai_med_extract.agents.phi.types import PhiLabel


def found(scrubber: PhiScrubber, text: str) -> dict[str, str]:
    return {text[s.start : s.end]: str(s.label) for s in scrubber.detect(text)}


def covers(scrubber: PhiScrubber, text: str, value: str) -> PhiLabel | None:
    start = text.index(value)
    end = start + len(value)
    for s in scrubber.detect(text):
        if s.start <= start and end <= s.end:
            return s.label
    return None


@pytest.mark.parametrize(
    ("text", "value", "label"),
    [
        ("Pt seen by Dr. Gillan this am.", "Gillan", PhiLabel.NAME),
        ("DR LUTHERVILLE NOTIFIED AND IN TO PRONOUNCE.", "LUTHERVILLE", PhiLabel.NAME),
        ("dr. anne aware of low uop", "anne", PhiLabel.NAME),
        ("Orders signed by Dr. Art White.", "Art White", PhiLabel.NAME),
        ("social: daughter Susan in to visit.", "Susan", PhiLabel.NAME),
        ("SOCIAL: HUSBAND RICH MARTINO IN TO VISIT", "RICH", PhiLabel.NAME),
        ("Mrs. Kowalczyk arrived from the cath lab.", "Kowalczyk", PhiLabel.NAME),
        ("Plan as above.\nIlene Macdonald RN\n", "Ilene Macdonald", PhiLabel.NAME),
        ("neuro checks q2h.\nirene snell, rn\n", "irene snell", PhiLabel.NAME),
        ("LINDSEY CARDARELLI CALLED TO BEDSIDE", "CARDARELLI", PhiLabel.NAME),
        ("admitted 7/22 with chest pain", "7/22", PhiLabel.DATE),
        ("CABG on 8/28/1995, tolerated well", "8/28/1995", PhiLabel.DATE),
        ("3-12-99 nursing note", "3-12-99", PhiLabel.DATE),
        ("stated it was July 29th today", "July 29th", PhiLabel.DATE),
        ("seen on the 3rd of March by cards", "3rd of March", PhiLabel.DATE),
        ("last used in may 15", "may 15", PhiLabel.DATE),
        ("s/p lumpectomy in 1983, HTN", "1983", PhiLabel.YEAR),
        ("cad s/p cabg '84", "84", PhiLabel.YEAR),
        ("98 yo gentleman s/p NSTEMI", "98", PhiLabel.AGE),
        ("will call family at 410-555-9876.", "410-555-9876", PhiLabel.PHONE),
        ("Pager #54321 for questions", "54321", PhiLabel.PHONE),
        ("fax: (617) 555-0199", "(617) 555-0199", PhiLabel.FAX),
        ("email jdoe@example.org for results", "jdoe@example.org", PhiLabel.EMAIL),
        ("SSN 123-45-6789 on file", "123-45-6789", PhiLabel.SSN),
        ("MRN: 00123456", "00123456", PhiLabel.MRN),
        ("Medicare ID 1EG4TE5MK73", "1EG4TE5MK73", PhiLabel.HEALTH_PLAN),
        ("account # 7781-22-901", "7781-22-901", PhiLabel.ACCOUNT),
        ("DEA # AB1234563", "AB1234563", PhiLabel.LICENSE),
        ("pacemaker serial # PJN7726451", "PJN7726451", PhiLabel.DEVICE),
        ("VIN 1HGCM82633A004352 noted in police report", "1HGCM82633A004352", PhiLabel.VEHICLE),
        ("see https://portal.example.org/pt/991 for images", "https://portal.example.org/pt/991", PhiLabel.URL),
        ("login from 192.168.14.2 flagged", "192.168.14.2", PhiLabel.IP_ADDRESS),
        ("lives at 42 Maple Street with wife", "42 Maple Street", PhiLabel.ADDRESS),
        ("Boston, MA 02114", "02114", PhiLabel.ZIP),
        ("plan transfer to Sacred Heart Hospital", "Sacred Heart", PhiLabel.HOSPITAL),
        ("transferred from Quartzville 3 this evening", "Quartzville", PhiLabel.LOCATION),
        ("family lives in Rockville and visits daily", "Rockville", PhiLabel.LOCATION),
        ("46 yo male came into GH on 7/18", "GH", PhiLabel.HOSPITAL),
    ],
)
def test_detects_each_identifier_kind(scrubber: PhiScrubber, text: str, value: str, label: PhiLabel) -> None:
    assert covers(scrubber, text, value) is label


@pytest.mark.parametrize(
    "text",
    [
        "Foley patent draining clear yellow urine.",
        "Hx of Parkinson's disease and Bell's palsy.",
        "propofol 20 mcg/kg/min, levophed 0.1, heparin 900 units/hr",
        "BP 120/80, HR 88, pain 3/10, strength 5/5 bilaterally",
        "vent settings psv 10/5 peep, fio2 40%",
        "given 1/2 NS at 100 cc/hr; 3/4 strength tube feeds",
        "K 4.1, Na 138, Cr 1.2, Hct 27.9, INR 1.3",
        "pt turned q2h, FS at 2000 and 2200, next due 0400",
        "O2 sats 94-96% on 2L NP. MS waxing and waning.",
        "Swan-Ganz catheter placed, Murphy's sign negative",
        "PATIENT ON LASIX DRIP AT 10MG/HR. UOP 950-1000 CC",
        "no ectopy. abd soft, +BS. skin intact.",
    ],
)
def test_hard_negatives_are_left_alone(scrubber: PhiScrubber, text: str) -> None:
    assert found(scrubber, text) == {}


def test_names_are_found_in_all_caps_unpunctuated_text(scrubber: PhiScrubber) -> None:
    text = "DR SCHWARTZ AWARE WILL WATCH DAUGHTER PHILOMENA IN FOR CONSENT ADMITTED 8/25 FROM CALVERT HOSPITAL"
    spans = found(scrubber, text)
    assert spans.get("SCHWARTZ") == "NAME"
    assert spans.get("PHILOMENA") == "NAME"
    assert spans.get("8/25") == "DATE"
    assert spans.get("CALVERT") == "HOSPITAL"


def test_a_name_found_by_a_cue_is_found_everywhere_in_the_document(scrubber: PhiScrubber) -> None:
    text = "Mr. Nicholson arrived at 4pm.\nPlan: nicholson to follow up with team."
    starts = [s.start for s in scrubber.detect(text) if s.label is PhiLabel.NAME]
    assert text.index("Nicholson") in starts and text.index("nicholson") in starts


def test_empty_text_gives_no_spans_and_empty_output(scrubber: PhiScrubber) -> None:
    result = scrubber.scrub("")
    assert result.text == "" and result.spans == []


def test_non_english_characters_keep_offsets_exact(scrubber: PhiScrubber) -> None:
    text = "Patiënt gezien door Dr. Müller op 3/14/2021 — café naast het ziekenhuis 😊."
    spans = scrubber.detect(text)
    assert {text[s.start : s.end] for s in spans} >= {"Müller", "3/14/2021"}
    result = scrubber.scrub(text)
    assert "Müller" not in result.text and "😊" in result.text and "café" in result.text


def test_very_long_input_is_scrubbed_whole(scrubber: PhiScrubber) -> None:
    block = "Pt stable overnight, seen by Dr. Gillan on 7/22. Foley patent. " * 20
    text = block * 200  # ~1.2 million characters
    result = scrubber.scrub(text)
    names = sum(1 for s in result.spans if s.label is PhiLabel.NAME)
    dates = sum(1 for s in result.spans if s.label is PhiLabel.DATE)
    assert names == dates == 4000
    assert "Gillan" not in result.text and result.text.endswith("Foley patent. ")


@pytest.mark.models
def test_ner_layer_finds_a_name_without_any_cue(full_scrubber: PhiScrubber) -> None:
    text = "Discussed plan with Margaret Okonkwo-Delacroix at the bedside."
    labels = {text[s.start : s.end]: s.detector for s in full_scrubber.detect(text)}
    assert any("Okonkwo" in value for value in labels)


@pytest.mark.models
def test_ner_layer_runs_only_on_doubtful_lines(full_scrubber: PhiScrubber) -> None:
    from ai_med_extract.agents.phi.ner import doubtful_lines

    text = "resp: ls clear, sats 98% on 2l.\nVisited by Okonkwo today.\ncv: sr 80s no ectopy."
    from ai_med_extract.agents.phi.tokens import tokenize

    lines = doubtful_lines(text, tokenize(text), full_scrubber.lexicon, [])
    assert [text[a:b] for a, b in lines] == ["Visited by Okonkwo today."]
