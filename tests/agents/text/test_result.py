from __future__ import annotations

from ai_med_extract.agents.text.result import Method, SegmentKind, TextAssembler, count_words


def test_assembler_offsets_point_at_each_segment_exactly() -> None:
    assembler = TextAssembler("\n\n")
    pieces = ["First page", "", "Третья страница ✓", "last"]
    for piece in pieces:
        assembler.add(piece, kind=SegmentKind.page, method=Method.text_layer)

    text = assembler.text
    assert [text[s.start : s.end] for s in assembler.segments] == pieces
    assert text == "\n\n".join(pieces)
    assert [s.index for s in assembler.segments] == [0, 1, 2, 3]


def test_document_confidence_is_weighted_by_segment_length() -> None:
    assembler = TextAssembler()
    assembler.add("a" * 90, kind=SegmentKind.page, method=Method.ocr, confidence=1.0)
    assembler.add("b" * 10, kind=SegmentKind.page, method=Method.ocr, confidence=0.0)
    assembler.add("no confidence", kind=SegmentKind.page, method=Method.text_layer)

    assert assembler.confidence() == 0.9
    assert assembler.methods() == [Method.ocr, Method.text_layer]


def test_words_are_counted_with_numbers_and_hyphens() -> None:
    assert count_words("Follow-up in 2 weeks; BP 120/80, O'Brien's note.") == 9
