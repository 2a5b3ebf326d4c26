from __future__ import annotations

import asyncio

import pytest

from ai_med_extract.agents.text import Step, TextExtractionAgent
from ai_med_extract.config import ExtractionSettings
from ai_med_extract.errors import AppError
from tests.fixtures import documents as docs
from tests.support import assert_read

SCAN = ["Patient has diabetes mellitus type 2", "Metformin 500 mg twice daily"]


class Cancelled(Exception):
    pass


async def test_file_over_the_size_limit_is_refused_with_413() -> None:
    agent = TextExtractionAgent(ExtractionSettings(), max_bytes=1000)

    with pytest.raises(AppError) as caught:
        await agent.extract(b"x" * 1001)

    assert (caught.value.status_code, caught.value.code) == (413, "FILE_TOO_LARGE")


async def test_progress_is_reported_after_each_page(agent: TextExtractionAgent) -> None:
    steps: list[Step] = []

    async def on_step(step: Step) -> None:
        steps.append(step)

    await agent.extract(docs.mixed_pdf([("text", ["one two three four"]), ("scan", SCAN)]), on_step=on_step)

    assert [(s.done, s.total, s.unit, s.detail) for s in steps] == [
        (1, 2, "page", "text_layer"),
        (2, 2, "page", "ocr"),
    ]


async def test_cancellation_stops_between_pages(agent: TextExtractionAgent) -> None:
    pages = [[f"Page {n} of the chart with enough words"] for n in range(1, 6)]
    seen: list[int] = []

    async def on_step(step: Step) -> None:
        seen.append(step.done)

    def check_cancelled() -> None:
        if len(seen) >= 2:
            raise Cancelled

    with pytest.raises(Cancelled):
        await agent.extract(docs.text_pdf(pages), on_step=on_step, check_cancelled=check_cancelled)

    assert seen == [1, 2]


async def test_agent_keeps_working_after_hostile_input(agent: TextExtractionAgent) -> None:
    hostile = [
        b"",
        docs.HTML_AS_PDF,
        docs.png_claiming_size(50_000, 50_000),
        docs.docx_with_member("word/bomb.bin", b"\x00" * (20 * 1024 * 1024)),
        docs.text_pdf([["x"]])[:200],
    ]
    for data in hostile:
        with pytest.raises(AppError) as caught:
            await agent.extract(data)
        assert 400 <= caught.value.status_code < 500

    result = await agent.extract(docs.text_pdf([["Still working after all of that"]]))

    assert result.text == "Still working after all of that"


async def test_scanned_documents_can_be_extracted_concurrently(agent: TextExtractionAgent) -> None:
    first, second = await asyncio.gather(
        agent.extract(docs.scanned_pdf([SCAN])),
        agent.extract(docs.scanned_pdf([["Lisinopril 10 mg once daily for hypertension"]])),
    )

    assert_read("\n".join(SCAN), first.text)
    assert_read("Lisinopril 10 mg once daily for hypertension", second.text)


async def test_error_messages_never_quote_the_document(agent: TextExtractionAgent) -> None:
    secret = "Jane Q. Patient, born 1970-01-01"
    with pytest.raises(AppError) as caught:
        await agent.extract(b"<html><body>" + secret.encode() + b"</body></html>")

    assert "Jane" not in str(caught.value.to_dict())
