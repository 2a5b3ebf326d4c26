"""Page-parallel extraction: page ranges run in worker processes, results come back in page order."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ai_med_extract.agents.text import Step, TextExtractionAgent
from ai_med_extract.agents.text.pages import page_ranges
from ai_med_extract.config import ExtractionSettings
from ai_med_extract.errors import AppError
from tests.fixtures import documents as docs

PAGES = [[f"Page {word} of the faxed record"] for word in ("one", "two", "three")]


@pytest.fixture
def parallel() -> Iterator[TextExtractionAgent]:
    agent = TextExtractionAgent(ExtractionSettings(page_workers=2, page_batch=1), max_bytes=20 * 1024 * 1024)
    try:
        yield agent
    finally:
        agent.close()


def test_page_ranges_cover_the_document_in_order() -> None:
    assert page_ranges(10, 4) == [range(0, 4), range(4, 8), range(8, 10)]
    assert page_ranges(1, 4) == [range(0, 1)]


async def test_scanned_pdf_read_by_two_processes_matches_one(
    agent: TextExtractionAgent, parallel: TextExtractionAgent
) -> None:
    data = docs.scanned_pdf(PAGES)
    steps: list[Step] = []

    async def on_step(step: Step) -> None:
        steps.append(step)

    one = await agent.extract(data)
    two = await parallel.extract(data, on_step=on_step)

    assert two.text == one.text
    assert [s.page for s in two.segments] == [1, 2, 3]
    assert two.metadata.ocr_pages == [1, 2, 3]
    assert [(s.done, s.total, s.detail) for s in steps] == [(1, 3, "ocr"), (2, 3, "ocr"), (3, 3, "ocr")]
    assert "three" in two.segment_text(two.segments[2]).lower()


async def test_text_pdf_in_parallel_keeps_page_order(parallel: TextExtractionAgent) -> None:
    pages = [[f"Line on page {n}"] for n in range(1, 8)]
    result = await parallel.extract(docs.text_pdf(pages))

    assert result.text == "\n\n".join(f"Line on page {n}" for n in range(1, 8))


async def test_multipage_tiff_read_in_parallel(agent: TextExtractionAgent, parallel: TextExtractionAgent) -> None:
    data = docs.multipage_tiff(PAGES[:2])

    assert (await parallel.extract(data)).text == (await agent.extract(data)).text


async def test_an_error_in_a_worker_comes_back_with_its_stable_code() -> None:
    settings = ExtractionSettings(page_workers=2, page_batch=1, max_image_pixels=100_000)
    agent = TextExtractionAgent(settings, max_bytes=20 * 1024 * 1024)
    try:
        with pytest.raises(AppError) as caught:
            await agent.extract(docs.scanned_pdf(PAGES[:2]))
    finally:
        agent.close()

    assert (caught.value.status_code, caught.value.code) == (422, "IMAGE_TOO_LARGE")
