"""The text extraction agent: bytes in, ``ExtractedDocument`` out, whatever the format.

The format is chosen from the content (``detect.py``); each format has one ``Extractor``. Blocking
work runs through the ``run`` callable the caller gives (``JobContext.run_blocking`` in jobs,
``asyncio.to_thread`` by default), never on the event loop. Parsing with the libraries a hostile
file can hold (PDF, DOCX, ODT, .doc, RTF, C-CDA, FHIR and what they contain) runs in parsing
processes (``pages.ParseProcesses``) under one deadline per document, ``parse_timeout_s`` from its
start: past it the process is killed and the document fails with ``EXTRACTION_TIMEOUT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ai_med_extract.agents.text.audio import AudioExtractor, Transcriber
from ai_med_extract.agents.text.base import ExtractionOutput, Extractor, Runner, Source, Step
from ai_med_extract.agents.text.cda import CdaExtractor
from ai_med_extract.agents.text.detect import Detected, detect
from ai_med_extract.agents.text.doc import DocExtractor
from ai_med_extract.agents.text.fhir_document import FhirDocumentExtractor, too_deep
from ai_med_extract.agents.text.image import ImageExtractor
from ai_med_extract.agents.text.ocr import OcrEngine
from ai_med_extract.agents.text.odt import OdtExtractor
from ai_med_extract.agents.text.pages import Deadline, ParseProcesses, ParseRunner, page_runner
from ai_med_extract.agents.text.pdf import PdfExtractor
from ai_med_extract.agents.text.plain import PlainTextExtractor
from ai_med_extract.agents.text.result import (
    DocumentKind,
    DocumentMetadata,
    ExtractedDocument,
    TextAssembler,
    count_words,
)
from ai_med_extract.agents.text.rtf import RtfExtractor
from ai_med_extract.agents.text.word import DocxExtractor
from ai_med_extract.config import ExtractionSettings
from ai_med_extract.errors import PayloadTooLarge, ServiceUnavailable

logger = logging.getLogger(__name__)

StepCallback = Callable[[Step], Awaitable[None]]


async def run_in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(fn, *args, **kwargs)


class TextExtractionAgent:
    def __init__(
        self,
        settings: ExtractionSettings,
        *,
        max_bytes: int,
        transcriber: Transcriber | None = None,
        ocr: OcrEngine | None = None,
        extractors: list[Extractor] | None = None,
    ):
        self.settings = settings
        self.max_bytes = max_bytes
        ocr = ocr or OcrEngine(settings)
        self._processes = ParseProcesses(keep=settings.page_workers + 1)
        self._pages = page_runner(settings.page_workers, settings.page_batch, self._processes)
        chosen = extractors or [
            PdfExtractor(settings, ocr, self._pages, self._processes),
            DocxExtractor(settings),
            ImageExtractor(settings, ocr, self._pages),
            PlainTextExtractor(),
            AudioExtractor(settings, transcriber),
            DocExtractor(settings),
            OdtExtractor(settings),
            RtfExtractor(),
            CdaExtractor(settings, self._extract_nested),
            FhirDocumentExtractor(settings, self._extract_nested),
        ]
        self._extractors: dict[DocumentKind, Extractor] = {e.kind: e for e in chosen}

    def close(self) -> None:
        """Stop the parsing processes."""
        self._pages.close()
        self._processes.close()

    def available(self) -> dict[str, bool]:
        """Which formats this server can read (health and ``/transcribe`` use it)."""
        return {kind.value: self._extractors[kind].is_available() for kind in self._extractors}

    def detect(self, data: bytes) -> Detected:
        self._check_size(data)
        return detect(data)

    def media_type(self, data: bytes) -> str:
        """The media type found from the content, or a 4xx with a stable code (the upload-time check)."""
        return self.detect(data).media_type

    async def extract(
        self,
        data: bytes,
        *,
        password: str | None = None,
        run: Runner = run_in_thread,
        on_step: StepCallback | None = None,
        check_cancelled: Callable[[], None] | None = None,
    ) -> ExtractedDocument:
        return await self._extract(
            data, password=password, run=run, on_step=on_step, check_cancelled=check_cancelled, depth=0
        )

    async def _extract_nested(self, data: bytes, depth: int, run: Runner) -> ExtractedDocument:
        """An attachment inside a container document, extracted as a document of its own type."""
        if depth > self.settings.container_max_depth:
            raise too_deep(self.settings.container_max_depth)
        return await self._extract(data, password=None, run=run, on_step=None, check_cancelled=None, depth=depth)

    async def _extract(
        self,
        data: bytes,
        *,
        password: str | None,
        run: Runner,
        on_step: StepCallback | None,
        check_cancelled: Callable[[], None] | None,
        depth: int,
    ) -> ExtractedDocument:
        started = time.perf_counter()
        self._check_size(data)
        if isinstance(run, ParseRunner):  # an attachment: within its container's deadline
            deadline, run = run.deadline, run.fallback
        else:
            deadline = Deadline(self.settings.parse_timeout_s)
        detected: Detected = await run(detect, data)
        extractor = self._extractors.get(detected.kind)
        if extractor is None:
            raise ServiceUnavailable(
                "this server does not read this kind of file",
                code="FORMAT_UNAVAILABLE",
                details={"kind": detected.kind.value},
            )
        out = ExtractionOutput(assembler=TextAssembler(extractor.separator()))
        source = Source(data=data, media_type=detected.media_type, password=password, depth=depth, deadline=deadline)
        parse = ParseRunner(self._processes, deadline, run)
        steps = extractor.extract(source, out, parse if extractor.isolated else run)
        async with contextlib.aclosing(steps):  # type: ignore[type-var]
            async for step in steps:
                if on_step is not None:
                    await on_step(step)
                if check_cancelled is not None:
                    check_cancelled()
        sha256 = await run(_sha256, data)
        text = out.assembler.text
        document = ExtractedDocument(
            text=text,
            segments=out.assembler.segments,
            methods=out.assembler.methods(),
            confidence=out.assembler.confidence(),
            metadata=DocumentMetadata(
                kind=detected.kind,
                media_type=detected.media_type,
                size_bytes=len(data),
                sha256=sha256,
                pages=out.pages,
                words=count_words(text),
                characters=len(text),
                ocr_pages=out.ocr_pages,
                encoding=out.encoding,
                duration_s=out.duration_s,
                language=out.language,
                model=out.model,
            ),
            warnings=out.warnings,
            sections=out.sections,
            structured=out.structured,
        )
        logger.info(
            "text extracted",
            extra={
                "kind": detected.kind.value,
                "pages": out.pages,
                "ocr_pages": len(out.ocr_pages),
                "characters": len(text),
                "duration_ms": round((time.perf_counter() - started) * 1000),
            },
        )
        return document

    def _check_size(self, data: bytes) -> None:
        if len(data) > self.max_bytes:
            raise PayloadTooLarge(
                "the file is larger than allowed",
                code="FILE_TOO_LARGE",
                details={"size_bytes": len(data), "max_bytes": self.max_bytes},
            )


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
