"""PDF: the text layer with pypdf, page by page; pages without a usable one are rendered with pdfium
and read with Tesseract.

A page's text layer is usable when it holds at least ``ocr_min_text_chars`` letters or digits and is
not mostly undecodable glyphs. A page with only a short text layer (a fax header, a stamp) over a
scan-sized image is OCR'd too, and the richer text kept. Pages are rendered at ``ocr_dpi``, lowered
for huge pages so that no bitmap exceeds ``max_image_pixels``.

All of it runs in parsing processes (``pages.ParseProcesses``) under the document's deadline, so a
pathological file is killed there (``EXTRACTION_TIMEOUT``) instead of holding a thread of the service.
With ``page_workers`` = 1 (the default) one process opens the document once and streams its pages
back (``pdf_pages``); with more, the pages are read in ranges by that many processes at once, each a
``read_pdf_pages`` task that opens the document from its bytes, and come back in page order. Built
without parsing processes (``processes=None``) the extractor reads in the job's thread.

Errors (stable codes): ``PDF_ENCRYPTED`` (422, no password given), ``PDF_PASSWORD_INCORRECT`` (422),
``TOO_MANY_PAGES`` (422), ``CORRUPT_PDF`` (422), ``IMAGE_TOO_LARGE`` (422, a page too big to render even
at low resolution), plus the OCR errors of ``ocr.py``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pypdf
import pypdfium2 as pdfium  # type: ignore[import-untyped]
from PIL import Image
from pypdf.errors import FileNotDecryptedError, WrongPasswordError

from ai_med_extract.agents.text.base import ExtractionOutput, Extractor, Runner, Source, Step
from ai_med_extract.agents.text.image import too_large
from ai_med_extract.agents.text.ocr import OcrEngine
from ai_med_extract.agents.text.pages import InlinePageRunner, PageRunner, ParseProcesses
from ai_med_extract.agents.text.result import DocumentKind, Method, SegmentKind
from ai_med_extract.config import ExtractionSettings
from ai_med_extract.errors import AppError, Unprocessable

logger = logging.getLogger(__name__)

# PDFium is not thread-safe: every call into it, from any document, goes through this one lock.
# (A process-wide lock for a process-wide C library; rendering is short next to OCR, which runs
# outside the lock.)
PDFIUM_LOCK = threading.Lock()

_MIN_RENDER_DPI = 100
# A page whose text layer is shorter than this and that draws a scan-sized image is OCR'd as well,
# and the richer of the two texts is kept.
_SPARSE_TEXT_CHARS = 200
_SCAN_IMAGE_PIXELS = 500_000


def corrupt() -> Unprocessable:
    return Unprocessable("the PDF is corrupt or cannot be parsed", code="CORRUPT_PDF")


@dataclass(frozen=True, slots=True)
class PageResult:
    text: str
    method: Method
    confidence: float | None
    rotation: int | None


class PdfExtractor(Extractor):
    kind = DocumentKind.pdf
    name = "pypdf+pdfium+tesseract"

    def __init__(
        self,
        settings: ExtractionSettings,
        ocr: OcrEngine,
        pages: PageRunner | None = None,
        processes: ParseProcesses | None = None,
    ):
        self._settings = settings
        self._ocr = ocr
        self._pages = pages or InlinePageRunner()
        self._processes = processes

    async def extract(self, source: Source, out: ExtractionOutput, run: Runner) -> AsyncIterator[Step]:
        if self._processes is not None:
            async for step in self._extract_isolated(source, out, run):
                yield step
            return
        document = await run(self._open, source)
        try:
            total = document.page_count
            if self._pages.workers > 1 and total > 1:
                job = PdfJob(document.password, self._settings)
                pages = self._pages.results(read_pdf_pages, source.data, job, total, run)
            else:
                pages = _pages_in_thread(document, run)
            async with contextlib.aclosing(pages):
                async for index, page in pages:
                    self._add(out, index, page)
                    yield Step(index + 1, total, "page", page.method.value)
        finally:
            await run(document.close)

    async def _extract_isolated(self, source: Source, out: ExtractionOutput, run: Runner) -> AsyncIterator[Step]:
        assert self._processes is not None
        job = PdfJob(source.password, self._settings)
        pages: AsyncGenerator[Any, None]
        if self._pages.workers > 1:
            total = await self._processes.call(pdf_page_count, source.data, job, deadline=source.deadline)
            if total > 1:
                pages = self._pages.results(read_pdf_pages, source.data, job, total, run,
                                            deadline=source.deadline)
            else:
                pages = self._processes.stream(pdf_pages, source.data, job, deadline=source.deadline)
                await anext(pages)
        else:
            pages = self._processes.stream(pdf_pages, source.data, job, deadline=source.deadline)
            total = await anext(pages)
        async with contextlib.aclosing(pages):
            async for index, page in pages:
                self._add(out, index, page)
                yield Step(index + 1, total, "page", page.method.value)

    def _add(self, out: ExtractionOutput, index: int, page: PageResult) -> None:
        out.assembler.add(
            page.text,
            kind=SegmentKind.page,
            method=page.method,
            confidence=page.confidence,
            page=index + 1,
            rotation=page.rotation,
        )
        out.pages += 1
        if page.method is Method.ocr:
            out.ocr_pages.append(index + 1)
        if not page.text:
            out.warnings.append(f"PAGE_EMPTY:{index + 1}")

    def _open(self, source: Source) -> _PdfDocument:
        return open_pdf(source.data, source.password, self._settings, self._ocr)


@dataclass(frozen=True, slots=True)
class PdfJob:
    """What a page-range task needs besides the bytes (picklable)."""

    password: str | None
    settings: ExtractionSettings


def read_pdf_pages(data: bytes, job: PdfJob, pages: range) -> list[PageResult]:
    """A page-range task (runs in any process): the pages' results, in order."""
    document = open_pdf(data, job.password, job.settings, OcrEngine(job.settings))
    try:
        return [document.read_page(index) for index in pages]
    finally:
        document.close()


def pdf_page_count(data: bytes, job: PdfJob) -> int:
    """A task (runs in a parsing process): open the document, check it, count its pages."""
    document = open_pdf(data, job.password, job.settings, OcrEngine(job.settings))
    try:
        return document.page_count
    finally:
        document.close()


def pdf_pages(data: bytes, job: PdfJob) -> Iterator[Any]:
    """A streaming task (runs in a parsing process): the page count, then ``(index, PageResult)`` for
    every page, from one opening of the document."""
    document = open_pdf(data, job.password, job.settings, OcrEngine(job.settings))
    try:
        yield document.page_count
        for index in range(document.page_count):
            yield index, document.read_page(index)
    finally:
        document.close()


async def _pages_in_thread(document: _PdfDocument, run: Runner) -> AsyncGenerator[tuple[int, PageResult], None]:
    for index in range(document.page_count):
        yield index, await run(document.read_page, index)


def open_pdf(data: bytes, password: str | None, settings: ExtractionSettings, ocr: OcrEngine) -> _PdfDocument:
    try:
        reader = pypdf.PdfReader(io.BytesIO(data), strict=False)
    except AppError:
        raise
    except Exception:  # pypdf raises many types on hostile input
        raise corrupt() from None
    if reader.is_encrypted:
        password = _decrypt(reader, password)
    try:
        count = len(reader.pages)
    except FileNotDecryptedError:
        raise Unprocessable("the PDF is encrypted; give its password", code="PDF_ENCRYPTED") from None
    except Exception:
        raise corrupt() from None
    if count == 0:
        raise corrupt()
    if count > settings.max_pages:
        raise Unprocessable(
            "the document has more pages than allowed",
            code="TOO_MANY_PAGES",
            details={"pages": count, "max_pages": settings.max_pages},
        )
    return _PdfDocument(reader, data, password, count, settings, ocr)


def _decrypt(reader: pypdf.PdfReader, password: str | None) -> str | None:
    # Many PDFs are encrypted only against editing, with an empty user password.
    for candidate in ("", password) if password else ("",):
        try:
            if reader.decrypt(candidate) != pypdf.PasswordType.NOT_DECRYPTED:
                return candidate
        except (WrongPasswordError, FileNotDecryptedError):
            continue
        except NotImplementedError:
            raise Unprocessable(
                "the PDF uses an encryption method that is not supported", code="PDF_ENCRYPTION_UNSUPPORTED"
            ) from None
        except Exception:
            raise corrupt() from None
    if password:
        raise Unprocessable("the PDF password is incorrect", code="PDF_PASSWORD_INCORRECT")
    raise Unprocessable("the PDF is encrypted; give its password", code="PDF_ENCRYPTED")


class _PdfDocument:
    def __init__(
        self,
        reader: pypdf.PdfReader,
        data: bytes,
        password: str | None,
        page_count: int,
        settings: ExtractionSettings,
        ocr: OcrEngine,
    ):
        self._reader = reader
        self._data = data
        self.password = password
        self.page_count = page_count
        self._settings = settings
        self._ocr = ocr
        self._pdfium: pdfium.PdfDocument | None = None

    def read_page(self, index: int) -> PageResult:
        """Blocking: the page's text layer, or OCR of its rendering when the layer is not usable."""
        layer: str | None
        try:
            page_object = self._reader.pages[index]
            layer = page_object.extract_text() or ""
        except AppError:
            raise
        except Exception:
            layer = None  # a broken content stream: PDFium may still render the page
        layer = layer.strip() if layer is not None else None
        if layer is not None and self._usable(layer):
            # A fax or scan often carries a short text stamp over the scanned image: read both.
            if _alnum(layer) >= _SPARSE_TEXT_CHARS or not _has_large_image(page_object):
                return PageResult(layer, Method.text_layer, None, None)
        self._ocr.require()
        image, dpi = self._render(index)
        page = self._ocr.recognize(image, dpi=dpi)
        if layer and _alnum(layer) >= _alnum(page.text):
            return PageResult(layer, Method.text_layer, None, None)
        return PageResult(page.text, Method.ocr, page.confidence, page.rotation)

    def _usable(self, text: str) -> bool:
        if _alnum(text) < self._settings.ocr_min_text_chars:
            return False
        unreadable = sum(1 for c in text if c == "\ufffd" or "\ue000" <= c <= "\uf8ff")
        return unreadable <= len(text) * 0.1

    def _render(self, index: int) -> tuple[Image.Image, int]:
        with PDFIUM_LOCK:
            try:
                if self._pdfium is None:
                    self._pdfium = pdfium.PdfDocument(self._data, password=self.password or None)
                page = self._pdfium[index]
                try:
                    width, height = page.get_size()
                    scale = self._scale(width, height)
                    bitmap = page.render(scale=scale, grayscale=True)
                    try:
                        return bitmap.to_pil().copy(), round(scale * 72)
                    finally:
                        bitmap.close()
                finally:
                    page.close()
            except AppError:
                raise
            except Exception:
                raise corrupt() from None

    def _scale(self, width: float, height: float) -> float:
        if width <= 0 or height <= 0:
            raise corrupt()
        limit = self._settings.max_image_pixels
        scale = self._settings.ocr_dpi / 72.0
        if width * height * scale * scale > limit:
            scale = math.sqrt(limit / (width * height))
            if scale * 72.0 < _MIN_RENDER_DPI:
                pixels = int(width * height * (_MIN_RENDER_DPI / 72.0) ** 2)
                raise too_large(pixels, limit)
        return scale

    def close(self) -> None:
        if self._pdfium is not None:
            with PDFIUM_LOCK:
                self._pdfium.close()
            self._pdfium = None


def _has_large_image(page: Any) -> bool:
    """Whether the page draws an image big enough to be a scan (resources only; nothing decoded)."""
    try:
        xobjects = page["/Resources"].get_object().get("/XObject")
        if xobjects is None:
            return False
        for ref in xobjects.get_object().values():
            xobject = ref.get_object()
            if xobject.get("/Subtype") == "/Image":
                if int(xobject.get("/Width", 0)) * int(xobject.get("/Height", 0)) >= _SCAN_IMAGE_PIXELS:
                    return True
    except Exception:  # unusual resource dictionaries: treat the page as text
        return False
    return False


def _alnum(text: str) -> int:
    return sum(1 for c in text if c.isalnum())
