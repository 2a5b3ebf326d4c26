"""Plain text: the encoding is detected with charset-normalizer; line endings become ``\\n``.

UTF-16 and UTF-32 are read with or without a byte order mark: without one, the byte order is told
from where the zero bytes fall (every other byte, or three in four, for text in Latin scripts).

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
_WIDE_ZERO_SHARE = 0.7  # share of zero bytes in the high-order positions of wide-encoded Latin text


def wide_encoding(sample: bytes) -> str | None:
    """UTF-16/32 (LE or BE) when ``sample`` (a file's first kilobytes, no BOM) reads as such text."""
    usable = len(sample) - len(sample) % 4
    if usable < 4 or b"\x00" not in sample[:usable]:
        return None
    quarters = usable // 4
    share = [sum(1 for b in sample[i:usable:4] if b == 0) / quarters for i in range(4)]
    candidates = []
    if min(share[1:]) >= _WIDE_ZERO_SHARE and share[0] < 0.5:
        candidates.append("utf_32_le")
    if min(share[:3]) >= _WIDE_ZERO_SHARE and share[3] < 0.5:
        candidates.append("utf_32_be")
    even, odd = (share[0] + share[2]) / 2, (share[1] + share[3]) / 2
    if odd >= _WIDE_ZERO_SHARE and even < 0.5:
        candidates.append("utf_16_le")
    if even >= _WIDE_ZERO_SHARE and odd < 0.5:
        candidates.append("utf_16_be")
    for encoding in candidates:
        try:
            text = sample[:usable].decode(encoding)
        except UnicodeDecodeError:
            continue
        controls = sum(1 for c in text if ord(c) < 32 and c not in "\t\n\r\x0c")
        if "\x00" not in text and controls <= max(1, len(text) // 100):
            return encoding
    return None


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
    wide = wide_encoding(data[:8192])
    if wide is not None:
        try:
            return _normalize(data.decode(wide)), wide
        except UnicodeDecodeError:
            raise undecodable() from None
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
