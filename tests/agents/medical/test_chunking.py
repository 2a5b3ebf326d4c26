"""Medical extraction over long text: chunks end between sentences, offsets are the whole text's."""

from __future__ import annotations

import re

import pytest

from ai_med_extract.agents.medical.chunking import chunk_spans
from ai_med_extract.agents.medical.extractor import ExtractorLimits, MedicalExtractor

PARAGRAPHS = [
    "Seen for follow up of diabetes. Metformin 500 mg PO BID was continued. BP 132/84.",
    "Medications: lisinopril 10 mg daily. Denies chest pain. Atorvastatin 20 mg QHS.",
    "Plan: repeat HbA1c in three months. Aspirin 81 mg daily. No known drug allergies.",
]


def long_note(repeats: int) -> str:
    return "\n\n".join(f"Visit {n}. " + PARAGRAPHS[n % 3] for n in range(repeats))


def test_chunks_cover_the_text_and_end_between_sentences() -> None:
    text = " ".join(f"Sentence number {n} says the patient is stable." for n in range(400))
    spans = chunk_spans(text, 1000)

    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
    assert all(end - start <= 1000 for start, end in spans)
    for _, end in spans[:-1]:
        assert re.search(r"stable\.\s+$", text[:end]), text[end - 30 : end]


def test_chunks_prefer_paragraph_breaks() -> None:
    text = long_note(60)
    for _, end in chunk_spans(text, 2000)[:-1]:
        assert text[end - 2 : end] == "\n\n"


def test_text_without_any_break_is_still_chunked() -> None:
    assert chunk_spans("x" * 2500, 1000) == [(0, 1000), (1000, 2000), (2000, 2500)]


@pytest.fixture(scope="module")
def whole() -> MedicalExtractor:
    return MedicalExtractor()


def test_items_from_later_chunks_point_at_the_whole_text(whole: MedicalExtractor) -> None:
    text = long_note(90)
    chunked = MedicalExtractor(limits=ExtractorLimits(chunk_chars=1500))
    out = chunked.extract(text)

    assert len(chunk_spans(text, 1500)) > 5
    late = [m for m in out.medications if m.start > len(text) * 0.8]
    assert late, "the last chunks' medications are found"
    for item in out.items():
        assert text[item.start : item.end] == item.text
    assert {m.name for m in late} >= {"metformin", "lisinopril", "atorvastatin", "aspirin"}
    ids = [m.id for m in out.medications]
    assert ids == [f"medication-{n}" for n in range(1, len(ids) + 1)]
    assert out.text_length == len(text)
    # Chunking changes nothing the rules find: the same items at the same offsets as in one pass.
    single = whole.extract(text)
    assert [(i.start, i.end, i.text) for i in out.items()] == [
        (i.start, i.end, i.text) for i in single.items()
    ]


def test_text_longer_than_one_pass_allows_is_extracted_whole(whole: MedicalExtractor) -> None:
    text = long_note(2400)  # ~ 210 k characters: three default-sized chunks
    out = whole.extract(text)

    assert len(out.medications) == 4 * 800
    last = max(out.medications, key=lambda m: m.start)
    assert text[last.start : last.end] == last.text and last.start > len(text) - 200
