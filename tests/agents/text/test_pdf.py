from __future__ import annotations

import io

import pypdf
import pytest

from ai_med_extract.agents.text import ExtractedDocument, Method, TextExtractionAgent
from ai_med_extract.config import ExtractionSettings
from ai_med_extract.errors import AppError
from tests.fixtures import documents as docs
from tests.support import OCR_MAX_CER, assert_read, character_error_rate

NOTE = ["Discharge summary", "Blood pressure 128/82 mmHg", "Metformin 500 mg twice daily"]
SCAN = ["Patient has diabetes mellitus type 2", "Metformin 500 mg twice daily"]
# Orientation detection needs a few lines of text to be sure, as on a real page.
PAGE = [
    "Patient has diabetes mellitus type 2",
    "Metformin 500 mg twice daily",
    "Blood pressure was elevated at the visit",
    "Follow up with primary care in two weeks",
    "Allergies: penicillin causes a rash",
]


def assert_offsets_exact(result: ExtractedDocument, pieces: list[str]) -> None:
    assert [result.segment_text(s) for s in result.segments] == pieces
    for before, after in zip(result.segments, result.segments[1:], strict=False):
        assert after.start >= before.end


async def test_text_pdf_is_read_from_its_text_layer_page_by_page(agent: TextExtractionAgent) -> None:
    data = docs.text_pdf([NOTE, ["Second page: follow up in 2 weeks"]])

    result = await agent.extract(data)

    assert result.text == "\n".join(NOTE) + "\n\nSecond page: follow up in 2 weeks"
    assert_offsets_exact(result, ["\n".join(NOTE), "Second page: follow up in 2 weeks"])
    assert [s.page for s in result.segments] == [1, 2]
    assert result.methods == [Method.text_layer]
    assert result.metadata.ocr_pages == []
    assert result.metadata.pages == 2
    assert result.metadata.words == 19  # "128/82" is two words
    assert result.metadata.kind == "pdf"
    assert len(result.metadata.sha256) == 64


async def test_scanned_pdf_pages_are_read_by_ocr(agent: TextExtractionAgent) -> None:
    result = await agent.extract(docs.scanned_pdf([SCAN]))

    assert_read("\n".join(SCAN), result.text)
    assert result.methods == [Method.ocr]
    assert result.metadata.ocr_pages == [1]
    assert result.segments[0].confidence is not None and result.segments[0].confidence > 0.8


async def test_mixed_pdf_reports_which_pages_were_ocrd(agent: TextExtractionAgent) -> None:
    data = docs.mixed_pdf([("text", NOTE), ("scan", SCAN), ("text", ["Signed: attending physician"])])

    result = await agent.extract(data)

    assert len(result.segments) == 3
    first, scanned, last = (result.segment_text(s) for s in result.segments)
    assert (first, last) == ("\n".join(NOTE), "Signed: attending physician")  # text layers: exact
    assert_read("\n".join(SCAN), scanned)  # the scanned page: OCR within a margin
    for before, after in zip(result.segments, result.segments[1:], strict=False):
        assert after.start >= before.end
    assert result.metadata.ocr_pages == [2]
    assert [s.method for s in result.segments] == [Method.text_layer, Method.ocr, Method.text_layer]
    assert result.methods == [Method.text_layer, Method.ocr]


async def test_scan_under_a_short_fax_stamp_is_read_by_ocr(agent: TextExtractionAgent) -> None:
    result = await agent.extract(docs.stamped_scan_pdf("Fax from clinic 2 of 5", PAGE))

    assert result.metadata.ocr_pages == [1]
    printed = " ".join(["Fax from clinic 2 of 5", *PAGE])  # the stamp above the page's lines
    assert character_error_rate(printed, result.text) <= OCR_MAX_CER, result.text


async def test_upside_down_scan_is_turned_before_ocr(agent: TextExtractionAgent) -> None:
    result = await agent.extract(docs.scanned_pdf([PAGE], rotate=180))

    # Tesseract may start a new paragraph; the words are compared within a margin.
    assert character_error_rate(" ".join(PAGE), result.text) <= OCR_MAX_CER, result.text
    assert result.segments[0].rotation == 180


async def test_encrypted_pdf_opens_with_its_password(agent: TextExtractionAgent) -> None:
    data = docs.encrypted_pdf([NOTE], "s3cret")

    result = await agent.extract(data, password="s3cret")

    assert result.text == "\n".join(NOTE)


@pytest.mark.parametrize(("password", "code"), [(None, "PDF_ENCRYPTED"), ("wrong", "PDF_PASSWORD_INCORRECT")])
async def test_encrypted_pdf_without_the_right_password_is_refused(
    agent: TextExtractionAgent, password: str | None, code: str
) -> None:
    with pytest.raises(AppError) as caught:
        await agent.extract(docs.encrypted_pdf([NOTE], "s3cret"), password=password)

    assert (caught.value.status_code, caught.value.code) == (422, code)
    assert "s3cret" not in str(caught.value.to_dict())


async def test_pdf_with_more_pages_than_allowed_is_refused() -> None:
    agent = TextExtractionAgent(ExtractionSettings(max_pages=3), max_bytes=10**7)

    with pytest.raises(AppError) as caught:
        await agent.extract(docs.blank_pages_pdf(4))

    assert (caught.value.status_code, caught.value.code) == (422, "TOO_MANY_PAGES")
    assert caught.value.details == {"pages": 4, "max_pages": 3}


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"%PDF-1.7\n" + b"\x00garbage" * 200, id="garbage-after-header"),
        pytest.param(docs.text_pdf([NOTE])[:300], id="truncated"),
        pytest.param(
            b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF", id="no-pages"
        ),
    ],
)
async def test_corrupt_pdf_is_refused_with_a_stable_code(agent: TextExtractionAgent, data: bytes) -> None:
    with pytest.raises(AppError) as caught:
        await agent.extract(data)

    assert (caught.value.status_code, caught.value.code) == (422, "CORRUPT_PDF")


async def test_html_page_named_pdf_is_refused(agent: TextExtractionAgent) -> None:
    with pytest.raises(AppError) as caught:
        await agent.extract(docs.HTML_AS_PDF)

    assert (caught.value.status_code, caught.value.code) == (415, "HTML_NOT_SUPPORTED")


async def test_huge_blank_page_is_rendered_within_the_pixel_limit(agent: TextExtractionAgent) -> None:
    writer = pypdf.PdfWriter()
    writer.add_blank_page(width=14400, height=14400)  # 200 x 200 inches: 3.6 G pixels at 300 dpi
    buffer = io.BytesIO()
    writer.write(buffer)

    with pytest.raises(AppError) as caught:
        await agent.extract(buffer.getvalue())

    assert (caught.value.status_code, caught.value.code) == (422, "IMAGE_TOO_LARGE")


async def test_ocr_timeout_fails_the_document_with_a_stable_code() -> None:
    agent = TextExtractionAgent(ExtractionSettings(ocr_timeout_s=0.01), max_bytes=10**7)

    with pytest.raises(AppError) as caught:
        await agent.extract(docs.scanned_pdf([SCAN]))

    assert (caught.value.status_code, caught.value.code) == (422, "OCR_TIMEOUT")
