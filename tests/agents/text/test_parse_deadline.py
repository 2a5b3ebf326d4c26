"""A document whose parsing runs past ``parse_timeout_s`` is killed with its parsing process and
fails with EXTRACTION_TIMEOUT; the next document is read as usual."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from collections.abc import Callable

import pytest

from ai_med_extract.agents.text import TextExtractionAgent
from ai_med_extract.agents.text.pages import ParseProcesses
from ai_med_extract.config import ExtractionSettings, Settings
from ai_med_extract.errors import AppError
from tests.fixtures import documents as docs
from tests.support import running_app, wait_for_job

# A million text runs: minutes of pypdf work on any machine, in a 20 kB file.
SLOW_PDF_OPERATORS = 1_000_000
LIMIT_S = 5  # far below that, far above what an ordinary text PDF takes
NOTE = "Discharge summary: the patient was seen for a follow-up visit and is doing well on the current plan."


def _parsers() -> list[multiprocessing.process.BaseProcess]:
    return [p for p in multiprocessing.active_children() if p.name == "document-parser"]


async def _until(condition: Callable[[], bool], within_s: float = 120.0) -> bool:
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


@pytest.mark.parametrize("page_workers", [1, 2])
async def test_a_pdf_that_parses_past_the_limit_fails_and_the_next_one_is_read(page_workers: int) -> None:
    agent = TextExtractionAgent(ExtractionSettings(parse_timeout_s=LIMIT_S, page_workers=page_workers, page_batch=1),
                                max_bytes=10**7)
    before = {p.pid for p in _parsers()}  # other tests' idle ones
    try:
        with pytest.raises(AppError) as caught:
            await agent.extract(docs.slow_text_pdf(SLOW_PDF_OPERATORS, pages=2))
        assert caught.value.status_code == 422 and caught.value.code == "EXTRACTION_TIMEOUT"
        assert caught.value.details == {"timeout_s": LIMIT_S}
        # the processes past the deadline are killed (one still starting for a cancelled range when
        # the deadline passed is killed as soon as it has started)
        assert await _until(lambda: {p.pid for p in _parsers()} <= before)
        started = agent._processes.started

        result = await agent.extract(docs.text_pdf([[NOTE], [NOTE]]))
        assert "Discharge summary" in result.text and result.metadata.pages == 2
        assert agent._processes.started > started  # a fresh process read it
    finally:
        agent.close()


async def test_a_parser_process_that_dies_fails_the_document_not_the_service() -> None:
    processes = ParseProcesses()
    try:
        with pytest.raises(AppError) as caught:
            await processes.call(os._exit, 3, deadline=None)
        assert caught.value.code == "PARSER_CRASHED"
        assert await processes.call(sum, [1, 2, 3], deadline=None) == 6
    finally:
        processes.close()


async def test_the_job_fails_with_the_code_and_the_service_takes_the_next_upload(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(extraction={"parse_timeout_s": LIMIT_S})
    async with running_app(settings) as client:
        slow = await client.post("/upload", files={"files": ("chart.pdf", docs.slow_text_pdf(SLOW_PDF_OPERATORS),
                                                            "application/pdf")},
                                 data={"scrub": "false", "extract": "false"})
        assert slow.status_code == 202
        failed = await wait_for_job(client, slow.json()["job_id"])
        assert failed["status"] == "failed" and failed["error"]["code"] == "EXTRACTION_TIMEOUT"
        assert "documents" not in (failed.get("result") or {}) or not failed["result"]["documents"]

        fine = await client.post("/upload", files={"files": ("note.pdf", docs.text_pdf([[NOTE]]),
                                                            "application/pdf")},
                                 data={"scrub": "false", "extract": "false"})
        done = await wait_for_job(client, fine.json()["job_id"])
        assert done["status"] == "completed"
        assert "follow-up visit" in done["result"]["documents"][0]["text"]
        assert (await client.get("/health/live")).status_code == 200


