"""OpenDocument text (.odt) with odfpy: headings, paragraphs and list items one a line, table rows
with cells separated by `` | ``, in document order; the package is checked for ZIP bombs first.

Errors (stable codes): ``CORRUPT_ODT`` (422), ``ZIP_BOMB`` / ``DOCX_TOO_LARGE`` (422, as for DOCX).
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterator
from typing import Any

from ai_med_extract.agents.text.base import ExtractionOutput, Extractor, Runner, Source, Step
from ai_med_extract.agents.text.result import DocumentKind, Method, SegmentKind
from ai_med_extract.agents.text.word import CELL_SEPARATOR, check_zip_container
from ai_med_extract.config import ExtractionSettings
from ai_med_extract.errors import AppError, Unprocessable

_TEXT_NS = "urn:oasis:names:tc:opendocument:xmlns:text:1.0"
_TABLE_NS = "urn:oasis:names:tc:opendocument:xmlns:table:1.0"


def corrupt() -> Unprocessable:
    return Unprocessable("the ODT file is corrupt or cannot be parsed", code="CORRUPT_ODT")


class OdtExtractor(Extractor):
    kind = DocumentKind.odt
    name = "odfpy"
    isolated = True

    def __init__(self, settings: ExtractionSettings):
        self._settings = settings

    async def extract(self, source: Source, out: ExtractionOutput, run: Runner) -> AsyncIterator[Step]:
        text = await run(self.read_text, source.data)
        out.pages = 1
        out.assembler.add(text, kind=SegmentKind.body, method=Method.text_layer)
        if not text.strip():
            out.warnings.append("PAGE_EMPTY:1")
        yield Step(1, 1, "part")

    def read_text(self, data: bytes) -> str:
        check_zip_container(
            data,
            max_total=self._settings.docx_max_uncompressed_bytes,
            max_ratio=self._settings.docx_max_ratio,
            corrupt_code="CORRUPT_ODT",
        )
        from odf.opendocument import load  # type: ignore[import-untyped]

        try:
            document = load(io.BytesIO(data))
            return "\n".join(line for line in _lines(document.text) if line.strip())
        except AppError:
            raise
        except Exception:  # odfpy and the XML parser raise many types on hostile input
            raise corrupt() from None


def _lines(element: Any) -> Iterator[str]:
    for child in element.childNodes:
        if child.nodeType != child.ELEMENT_NODE:
            continue
        namespace, name = child.qname
        if namespace == _TEXT_NS and name in ("p", "h"):
            yield _inline_text(child)
        elif namespace == _TABLE_NS and name == "table-row":
            cells = [" ".join(line.strip() for line in _lines(cell)) for cell in _cells(child)]
            if any(cells):
                yield CELL_SEPARATOR.join(cells)
        elif namespace == _TEXT_NS and name == "list-item":
            for line in _lines(child):
                yield f"- {line}"
        elif namespace == _TEXT_NS and name in ("tracked-changes", "sequence-decls"):
            continue
        else:
            yield from _lines(child)


def _cells(row: Any) -> Iterator[Any]:
    for cell in row.childNodes:
        if cell.nodeType == cell.ELEMENT_NODE and cell.qname == (_TABLE_NS, "table-cell"):
            yield cell


def _inline_text(element: Any) -> str:
    """A paragraph's text: spans, links and fields included; ``text:s``/``tab``/``line-break`` honoured."""
    out: list[str] = []
    for child in element.childNodes:
        if child.nodeType == child.TEXT_NODE:
            out.append(str(child.data))
            continue
        if child.nodeType != child.ELEMENT_NODE:
            continue
        namespace, name = child.qname
        if namespace == _TEXT_NS and name == "s":
            out.append(" " * int(child.getAttrNS(_TEXT_NS, "c") or 1))
        elif namespace == _TEXT_NS and name == "tab":
            out.append("\t")
        elif namespace == _TEXT_NS and name == "line-break":
            out.append("\n")
        elif namespace == _TEXT_NS and name in ("note", "annotation"):
            continue  # footnote bodies and comments are not part of the running text
        else:
            out.append(_inline_text(child))
    return "".join(out)
