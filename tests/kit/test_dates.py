"""The shared dates module: one reading of dates for PHI, medical extraction and summaries."""

from __future__ import annotations

from datetime import date

import pytest

from ai_med_extract.kit.dates import (
    expand_year,
    find_dates,
    parse_date,
    parse_fhir_date,
    shift_date_text,
    shift_year,
)

REF = date(2026, 12, 2)


@pytest.mark.parametrize(
    ("written", "iso"),
    [
        ("3/4/98", "1998-03-04"),
        ("3/4/25", "2025-03-04"),
        ("3/4/1998", "1998-03-04"),
        ("2021-03-04", "2021-03-04"),
        ("2021-03-04T10:15:00Z", "2021-03-04"),
        ("March 4, 2021", "2021-03-04"),
        ("Mar. 4th 2021", "2021-03-04"),
        ("4 March 2021", "2021-03-04"),
        ("15/08/2021", "2021-08-15"),
        ("Sept 2019", "2019-09"),
        ("2019-09", "2019-09"),
        ("1987", "1987"),
    ],
)
def test_a_date_is_read_at_the_precision_it_was_written(written: str, iso: str) -> None:
    mention = parse_date(written, reference=REF)
    assert mention is not None and mention.iso() == iso


def test_a_two_digit_year_is_never_in_the_future_of_its_document() -> None:
    assert expand_year(98, reference=REF) == 1998
    assert expand_year(26, month=11, day=30, reference=REF) == 2026
    assert expand_year(26, month=12, day=30, reference=REF) == 1926
    # a document dated 1999 puts "3/4/05" in 1905, not 2005
    assert parse_date("3/4/05", reference=date(1999, 6, 1)).iso() == "1905-03-04"  # type: ignore[union-attr]
    # without a reference, today is the reference: nothing found is after today
    assert all(d.as_date() <= date.today() for d in find_dates("seen 1/2/99, 3/4/00 and 12/31/49"))  # type: ignore[operator]


def test_find_dates_keeps_the_most_precise_form_and_offsets() -> None:
    text = "Admitted 2021-03-04, colonoscopy March 2019; CABG in 1998. BP 120/80."
    found = find_dates(text, reference=REF)
    assert [text[d.start : d.end] for d in found] == ["2021-03-04", "March 2019", "1998"]
    assert [d.precision for d in found] == ["day", "month", "year"]
    assert [d.iso() for d in find_dates(text, min_precision="day")] == ["2021-03-04"]


def test_impossible_dates_are_not_dates() -> None:
    assert find_dates("2/30/2021 and 13/13/2020 and 2021-02-29") == []
    assert parse_date("not a date") is None
    assert parse_date("3/4/98 and more") is None


def test_fhir_dates_are_read_strictly() -> None:
    assert parse_fhir_date("2021").precision == "year"  # type: ignore[union-attr]
    assert parse_fhir_date("2021-03-04T10:00:00+01:00").iso() == "2021-03-04"  # type: ignore[union-attr]
    assert parse_fhir_date("15/08/2021") is None
    assert parse_fhir_date("2021-13") is None


def test_shifting_keeps_the_written_form_and_the_century_rule() -> None:
    assert shift_date_text("7/22", -10) == "7/12"
    assert shift_date_text("3/4/98", -4, reference=REF) == "2/28/98"
    assert shift_date_text("1/1/00", -1, reference=REF) == "12/31/99"
    assert shift_date_text("MARCH 3rd", 2) == "MARCH 5"
    assert shift_date_text("3 of march 2020", -3) == "29 february 2020"
    assert shift_date_text("2021-03-01", -1) == "2021-02-28"
    assert shift_date_text("13/45", 1) is None
    assert shift_year(2000, -200) == 1999
