"""Plain text: the encoding is detected with charset-normalizer; line endings become ``\\n``.

Errors (stable codes): ``UNDECODABLE_TEXT`` (422, no text encoding fits the bytes).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from charset_normalizer import from_bytes

from ai_med_extract.agents.text.base import ExtractionOutput, Extractor, Runner, Source, Step
from ai_med_extract.agents.text.result import DocumentKind, Method, SegmentKind
from ai_med_extract.errors import Unprocessable

_BOMS = (
    (b"\xef\xbb\xbf", "utf_8"),
    (b"\xff\xfe\x00\x00", "utf_32_le"),
    (b"\x00\x00\xfe\xff", "utf_32_be"),
    (b"\xff\xfe", "utf_16_le"),
    (b"\xfe\xff", "utf_16_be"),
)


_TIE_BREAK = ("cp1252", "iso8859_15", "latin_1")


def undecodable() -> Unprocessable:
    return Unprocessable("the text's character encoding cannot be determined", code="UNDECODABLE_TEXT")


def decode_text(data: bytes) -> tuple[str, str]:
    """Blocking: (text with ``\\n`` line endings and no BOM, encoding name)."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                text = data[len(bom) :].decode(encoding)
            except UnicodeDecodeError:
                break
            return _normalize(text), encoding
    try:
        text, encoding = data.decode("utf-8"), "utf_8"
    except UnicodeDecodeError:
        text, encoding = _detect(data)
    if "\x00" in text:
        raise undecodable()
    return _normalize(text), encoding


def _detect(data: bytes) -> tuple[str, str]:
    matches = from_bytes(data)
    best = matches.best()
    if best is None:
        raise undecodable()
    # Short texts often fit several code pages equally well; then take the most common one.
    tied = [m for m in matches if m.chaos == best.chaos and m.coherence == best.coherence]
    for preferred in _TIE_BREAK:
        for match in tied:
            if match.encoding == preferred:
                return str(match), match.encoding
    return str(best), best.encoding


def _normalize(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff")


class PlainTextExtractor(Extractor):
    kind = DocumentKind.text
    name = "charset-normalizer"

    async def extract(self, source: Source, out: ExtractionOutput, run: Runner) -> AsyncIterator[Step]:
        text, encoding = await run(decode_text, source.data)
        out.encoding = encoding
        out.pages = 1
        out.assembler.add(text, kind=SegmentKind.page, method=Method.text_layer, page=1)
        if not text.strip():
            out.warnings.append("PAGE_EMPTY:1")
        yield Step(1, 1, "page")
