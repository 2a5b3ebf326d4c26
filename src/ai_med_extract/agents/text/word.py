"""DOCX with python-docx: body in reading order (paragraphs, lists, tables row by row, text boxes
right after the paragraph they are anchored in), then the page headers and footers as their own
segments, and footnotes, endnotes and comments.

A text box written both as DrawingML and as a VML fallback (``mc:AlternateContent``) is read once,
from the ``mc:Choice``; boxes nested in boxes are read where they sit.

Layout of the full text: header segments, the body segment, a notes segment (footnotes, endnotes,
then comments, each in document order), footer segments, separated by a blank line. In the body each paragraph is one line; list items carry their number or a ``-`` bullet and two
spaces of indent per level; a table row is one line with its cells separated by `` | ``.

The ZIP container is inspected with :mod:`zipfile` before python-docx opens it: the total declared
uncompressed size and each large member's compression ratio are bounded. ``zipfile`` never inflates a
member past its declared size, so the declared sizes bound the real ones.

Errors (stable codes): ``DOCX_TOO_LARGE`` (422, expands beyond the limit), ``ZIP_BOMB`` (422, a member
compressed suspiciously well or too many members), ``CORRUPT_DOCX`` (422).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import AsyncIterator, Iterator
from typing import Any

import docx
from docx.document import Document as DocxDocument
from docx.oxml.ns import qn
from docx.table import Table
from docx.text.paragraph import Paragraph

from ai_med_extract.agents.text.base import ExtractionOutput, Extractor, Runner, Source, Step
from ai_med_extract.agents.text.result import DocumentKind, Method, SegmentKind
from ai_med_extract.config import ExtractionSettings
from ai_med_extract.errors import AppError, Unprocessable

_RATIO_FLOOR_BYTES = 1024 * 1024  # small members (styles, settings) legitimately compress very well
_MAX_MEMBERS = 10_000
CELL_SEPARATOR = " | "


def corrupt() -> Unprocessable:
    return Unprocessable("the DOCX file is corrupt or cannot be parsed", code="CORRUPT_DOCX")


def check_zip_container(
    data: bytes, *, max_total: int, max_ratio: float, corrupt_code: str = "CORRUPT_DOCX"
) -> None:
    """Refuse ZIP bombs from the central directory alone (nothing is inflated)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError):
        what = "DOCX" if corrupt_code == "CORRUPT_DOCX" else "document"
        raise Unprocessable(f"the {what} file is corrupt or cannot be parsed", code=corrupt_code) from None
    if len(members) > _MAX_MEMBERS:
        raise Unprocessable(
            "the DOCX container has too many members",
            code="ZIP_BOMB",
            details={"members": len(members), "max_members": _MAX_MEMBERS},
        )
    total = 0
    for member in members:
        total += member.file_size
        if member.file_size > _RATIO_FLOOR_BYTES:
            ratio = member.file_size / max(1, member.compress_size)
            if ratio > max_ratio:
                raise Unprocessable(
                    "the DOCX container expands suspiciously",
                    code="ZIP_BOMB",
                    details={"ratio": round(ratio, 1), "max_ratio": max_ratio},
                )
    if total > max_total:
        raise Unprocessable(
            "the DOCX file expands beyond the allowed size",
            code="DOCX_TOO_LARGE",
            details={"uncompressed_bytes": total, "max_uncompressed_bytes": max_total},
        )


class DocxExtractor(Extractor):
    kind = DocumentKind.docx
    name = "python-docx"
    isolated = True

    def __init__(self, settings: ExtractionSettings):
        self._settings = settings

    async def extract(self, source: Source, out: ExtractionOutput, run: Runner) -> AsyncIterator[Step]:
        parts = await run(self.read_parts, source.data)
        for kind, text in parts:
            out.assembler.add(text, kind=kind, method=Method.text_layer)
        out.pages = 1
        if not any(text for _, text in parts):
            out.warnings.append("PAGE_EMPTY:1")
        yield Step(1, 1, "part")

    def read_parts(self, data: bytes) -> list[tuple[SegmentKind, str]]:
        """Blocking: (segment kind, text) for headers, body and footers."""
        check_zip_container(
            data,
            max_total=self._settings.docx_max_uncompressed_bytes,
            max_ratio=self._settings.docx_max_ratio,
        )
        try:
            document = docx.Document(io.BytesIO(data))
            numbering = _Numbering(document)
            body = "\n".join(_block_lines(document.element.body, document, numbering))
            headers, footers = _headers_and_footers(document, numbering)
            notes = "\n".join(_note_lines(document, numbering))
        except AppError:
            raise
        except Exception:  # python-docx and lxml raise many types on hostile input
            raise corrupt() from None
        parts: list[tuple[SegmentKind, str]] = [(SegmentKind.header, t) for t in headers]
        parts.append((SegmentKind.body, body))
        if notes:
            parts.append((SegmentKind.note, notes))
        parts.extend((SegmentKind.footer, t) for t in footers)
        return parts


def _block_lines(container: Any, parent: Any, numbering: _Numbering) -> Iterator[str]:
    """Lines of a body, header, footer or cell, in document order (content controls included)."""
    for child in container.iterchildren():
        if child.tag == qn("w:p"):
            line = numbering.render(Paragraph(child, parent))
            if line.strip():
                yield line
            for box in _text_boxes(child):
                yield from _block_lines(box, parent, numbering)
        elif child.tag == qn("w:tbl"):
            yield from _table_lines(Table(child, parent), numbering)
        elif child.tag == qn("w:sdt"):
            content = child.find(qn("w:sdtContent"))
            if content is not None:
                yield from _block_lines(content, parent, numbering)


_R = qn("w:r")
_SDT = qn("w:sdt")
_SDT_CONTENT = qn("w:sdtContent")
_ALTERNATE = "{http://schemas.openxmlformats.org/markup-compatibility/2006}AlternateContent"
_CHOICE = "{http://schemas.openxmlformats.org/markup-compatibility/2006}Choice"
# Inline wrappers whose runs are part of the visible text (tracked insertions, fields, links, tags).
_INLINE = frozenset(
    qn(tag)
    for tag in ("w:hyperlink", "w:ins", "w:smartTag", "w:fldSimple", "w:customXml", "w:moveTo", "w:dir", "w:bdo")
)


def paragraph_text(element: Any) -> str:
    """A paragraph's visible text: its runs, also inside links, tracked insertions, inline content
    controls, smart tags and simple fields (python-docx's ``Paragraph.text`` reads runs and links
    only); deleted and moved-away text is left out."""
    out: list[str] = []
    for child in element.iterchildren():
        tag = child.tag
        if tag == _R:
            out.append(child.text)
        elif tag in _INLINE:
            out.append(paragraph_text(child))
        elif tag == _SDT:
            content = child.find(_SDT_CONTENT)
            if content is not None:
                out.append(paragraph_text(content))
        elif tag == _ALTERNATE:
            choice = child.find(_CHOICE)
            if choice is not None:
                out.append(paragraph_text(choice))
    return "".join(out)


_TXBX = qn("w:txbxContent")
_FALLBACK = "{http://schemas.openxmlformats.org/markup-compatibility/2006}Fallback"
_P = qn("w:p")
_NOTE_PARTS = (
    ("/word/footnotes.xml", qn("w:footnote")),
    ("/word/endnotes.xml", qn("w:endnote")),
    ("/word/comments.xml", qn("w:comment")),
)


def _text_boxes(paragraph: Any) -> Iterator[Any]:
    """The text boxes anchored in this paragraph (not in a box inside it), VML fallbacks skipped."""
    for box in paragraph.iter(_TXBX):
        enclosing = None
        fallback = False
        for ancestor in box.iterancestors():
            if ancestor.tag == _FALLBACK:
                fallback = True
            if ancestor.tag == _P:
                enclosing = ancestor
                break
        if enclosing is paragraph and not fallback:
            yield box


def _note_lines(document: DocxDocument, numbering: _Numbering) -> Iterator[str]:
    """Footnotes, endnotes and comments, each part in document order (separators skipped)."""
    from docx.oxml.parser import parse_xml

    parts = {str(part.partname): part for part in document.part.package.iter_parts()}
    for partname, tag in _NOTE_PARTS:
        part = parts.get(partname)
        if part is None:
            continue
        root = parse_xml(part.blob)
        for note in root.iterchildren(tag):
            if note.get(qn("w:type")) in ("separator", "continuationSeparator", "continuationNotice"):
                continue
            yield from _block_lines(note, document, numbering)


def _table_lines(table: Table, numbering: _Numbering) -> Iterator[str]:
    for row in table.rows:
        cells: list[str] = []
        previous = None
        for cell in row.cells:
            if previous is not None and cell._tc is previous:
                continue  # a horizontally merged cell is reported once
            previous = cell._tc
            inner = list(_block_lines(cell._tc, cell, numbering))
            cells.append(" ".join(line.strip() for line in inner))
        if any(cells):
            yield CELL_SEPARATOR.join(cells)


def _headers_and_footers(document: DocxDocument, numbering: _Numbering) -> tuple[list[str], list[str]]:
    headers: list[str] = []
    footers: list[str] = []
    even = bool(document.settings.odd_and_even_pages_header_footer)
    for section in document.sections:
        variants = [(section.header, section.footer)]
        if section.different_first_page_header_footer:
            variants.append((section.first_page_header, section.first_page_footer))
        if even:
            variants.append((section.even_page_header, section.even_page_footer))
        for header, footer in variants:
            for part, found in ((header, headers), (footer, footers)):
                if part.is_linked_to_previous:
                    continue
                text = "\n".join(_block_lines(part._element, part, numbering))
                if text and text not in found:
                    found.append(text)
    return headers, footers


_ROMAN = [(1000, "m"), (900, "cm"), (500, "d"), (400, "cd"), (100, "c"), (90, "xc"), (50, "l"),
          (40, "xl"), (10, "x"), (9, "ix"), (5, "v"), (4, "iv"), (1, "i")]  # fmt: skip


def _roman(n: int) -> str:
    out = []
    for value, letters in _ROMAN:
        while n >= value:
            out.append(letters)
            n -= value
    return "".join(out)


def _letters(n: int) -> str:
    out = ""
    while n > 0:
        n, rem = divmod(n - 1, 26)
        out = chr(ord("a") + rem) + out
    return out


def _format_number(n: int, fmt: str) -> str:
    if fmt == "lowerLetter":
        return _letters(n)
    if fmt == "upperLetter":
        return _letters(n).upper()
    if fmt == "lowerRoman":
        return _roman(n)
    if fmt == "upperRoman":
        return _roman(n).upper()
    return str(n)


class _Numbering:
    """Renders list paragraphs with their marker, resolving numbering.xml like a word processor."""

    def __init__(self, document: DocxDocument):
        try:
            self._root = document.part.numbering_part.element
        except (KeyError, NotImplementedError, AttributeError):
            self._root = None
        self._counters: dict[str, list[int]] = {}

    def render(self, paragraph: Paragraph) -> str:
        text = paragraph_text(paragraph._p)
        found = self._num_pr(paragraph)
        if found is None:
            return text
        num_id, level = found
        fmt, pattern, start = self._level_format(num_id, level)
        if fmt == "none":
            return text
        indent = "  " * level
        if fmt == "bullet":
            return f"{indent}- {text}"
        counters = self._counters.setdefault(num_id, [0] * 9)
        counters[level] = counters[level] + 1 if counters[level] else start
        for deeper in range(level + 1, 9):
            counters[deeper] = 0
        marker = pattern or f"%{level + 1}."
        for k in range(9):
            token = f"%{k + 1}"
            if token in marker:
                value = counters[k] or 1
                level_fmt = fmt if k == level else self._level_format(num_id, k)[0]
                marker = marker.replace(token, _format_number(value, level_fmt))
        return f"{indent}{marker} {text}"

    def _num_pr(self, paragraph: Paragraph) -> tuple[str, int] | None:
        p_pr = paragraph._p.pPr
        num_pr: Any = p_pr.numPr if p_pr is not None else None  # python-docx types it loosely
        style = paragraph.style if num_pr is None else None
        while num_pr is None and style is not None:
            style_ppr = style.element.pPr
            num_pr = style_ppr.numPr if style_ppr is not None else None
            style = style.base_style
        if num_pr is None or num_pr.numId is None:
            return None
        num_id = str(num_pr.numId.val)
        if num_id == "0":  # numbering explicitly removed
            return None
        level = int(num_pr.ilvl.val) if num_pr.ilvl is not None else 0
        return num_id, max(0, min(8, level))

    def _level_format(self, num_id: str, level: int) -> tuple[str, str | None, int]:
        if self._root is None:
            return "bullet", None, 1
        # python-docx elements resolve the w: prefix themselves.
        abstract = self._root.xpath(f'./w:num[@w:numId="{int(num_id)}"]/w:abstractNumId/@w:val')
        if not abstract:
            return "bullet", None, 1
        lvl = self._root.xpath(
            f'./w:abstractNum[@w:abstractNumId="{int(abstract[0])}"]/w:lvl[@w:ilvl="{level}"]'
        )
        if not lvl:
            return "bullet", None, 1
        fmt = _child_value(lvl[0], "w:numFmt")
        text = _child_value(lvl[0], "w:lvlText")
        start = _child_value(lvl[0], "w:start")
        return (
            fmt or "decimal",
            text,
            int(start) if start and start.lstrip("-").isdigit() else 1,
        )


def _child_value(element: Any, tag: str) -> str | None:
    child = element.find(qn(tag))
    return None if child is None else child.get(qn("w:val"))
