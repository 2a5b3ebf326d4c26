from __future__ import annotations

import io

import docx
import pytest

from ai_med_extract.agents.text import Method, SegmentKind, TextExtractionAgent
from ai_med_extract.config import ExtractionSettings
from ai_med_extract.errors import AppError
from tests.fixtures import documents as docs


def _save(document: docx.document.Document) -> bytes:
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


async def test_docx_gives_header_body_with_lists_and_table_then_footer(agent: TextExtractionAgent) -> None:
    result = await agent.extract(docs.clinic_docx())

    assert result.text == docs.CLINIC_DOCX_TEXT
    assert [s.kind for s in result.segments] == [SegmentKind.header, SegmentKind.body, SegmentKind.footer]
    assert result.segment_text(result.segments[0]) == "Riverside Clinic - Cardiology"
    assert result.segment_text(result.segments[2]) == "Confidential patient record"
    assert result.methods == [Method.text_layer]
    assert result.metadata.kind == "docx"


async def test_docx_body_keeps_reading_order_of_paragraphs_and_tables(agent: TextExtractionAgent) -> None:
    document = docx.Document()
    document.add_paragraph("Before the table")
    table = document.add_table(rows=1, cols=2)
    table.cell(0, 0).text = "Weight"
    table.cell(0, 1).text = "72 kg"
    document.add_paragraph("After the table")

    result = await agent.extract(_save(document))

    assert result.text == "Before the table\nWeight | 72 kg\nAfter the table"


async def test_docx_merged_cells_are_reported_once(agent: TextExtractionAgent) -> None:
    document = docx.Document()
    table = document.add_table(rows=2, cols=3)
    merged = table.cell(0, 0).merge(table.cell(0, 2))
    merged.text = "Vital signs"
    for col, value in enumerate(["HR 72", "BP 120/80", "SpO2 98%"]):
        table.cell(1, col).text = value

    result = await agent.extract(_save(document))

    assert result.text == "Vital signs\nHR 72 | BP 120/80 | SpO2 98%"


async def test_docx_nested_numbered_list_keeps_levels(agent: TextExtractionAgent) -> None:
    document = docx.Document()
    document.add_paragraph("Assessment", style="List Number")
    nested = document.add_paragraph("Hypertension", style="List Number")
    num_pr = nested._p.get_or_add_pPr().get_or_add_numPr()
    num_pr.get_or_add_ilvl().val = 1
    num_pr.get_or_add_numId().val = document.styles["List Number"].element.pPr.numPr.numId.val
    document.add_paragraph("Plan", style="List Number")

    result = await agent.extract(_save(document))

    assert result.text.split("\n") == ["1. Assessment", "  - Hypertension", "2. Plan"]


async def test_docx_zip_bomb_is_refused_before_parsing(agent: TextExtractionAgent) -> None:
    bomb = docs.docx_with_member("word/media/padding.bin", b"\x00" * (30 * 1024 * 1024))

    with pytest.raises(AppError) as caught:
        await agent.extract(bomb)

    assert (caught.value.status_code, caught.value.code) == (422, "ZIP_BOMB")
    assert caught.value.details["ratio"] > 100


async def test_docx_expanding_beyond_the_total_limit_is_refused() -> None:
    agent = TextExtractionAgent(ExtractionSettings(docx_max_uncompressed_bytes=100_000), max_bytes=10**7)

    with pytest.raises(AppError) as caught:
        await agent.extract(docs.clinic_docx())

    assert (caught.value.status_code, caught.value.code) == (422, "DOCX_TOO_LARGE")


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(docs.docx_without_member("word/document.xml"), id="no-main-part"),
        pytest.param(docs.docx_with_member("word/document.xml", b"<w:document><broken"), id="bad-xml"),
        pytest.param(docs.clinic_docx()[:2000], id="truncated"),
    ],
)
async def test_corrupt_docx_is_refused_with_a_stable_code(agent: TextExtractionAgent, data: bytes) -> None:
    with pytest.raises(AppError) as caught:
        await agent.extract(data)

    assert (caught.value.status_code, caught.value.code) == (422, "CORRUPT_DOCX")


async def test_zip_that_is_not_a_docx_is_unsupported(agent: TextExtractionAgent) -> None:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("notes.txt", "hello")

    with pytest.raises(AppError) as caught:
        await agent.extract(buffer.getvalue())

    assert (caught.value.status_code, caught.value.code) == (415, "UNSUPPORTED_FORMAT")
