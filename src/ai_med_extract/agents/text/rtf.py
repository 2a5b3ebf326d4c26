"""RTF with striprtf: control words and groups that carry no text (fonts, styles, pictures) dropped.

Errors (stable codes): ``CORRUPT_RTF`` (422, the file cannot be read as RTF).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from striprtf.striprtf import rtf_to_text  # type: ignore[import-untyped]

from ai_med_extract.agents.text.base import ExtractionOutput, Extractor, Runner, Source, Step
from ai_med_extract.agents.text.plain import decode_text
from ai_med_extract.agents.text.result import DocumentKind, Method, SegmentKind
from ai_med_extract.errors import AppError, Unprocessable


def read_rtf(data: bytes) -> str:
    """Blocking: the text of an RTF file (its 7-bit source decoded, escapes resolved by striprtf)."""
    try:
        source, _ = decode_text(data)
        text = rtf_to_text(source, errors="replace")
    except AppError:
        raise Unprocessable("the RTF file cannot be read", code="CORRUPT_RTF") from None
    except Exception:  # striprtf raises plain exceptions on malformed input
        raise Unprocessable("the RTF file cannot be read", code="CORRUPT_RTF") from None
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return "\n".join(lines).strip("\n")


class RtfExtractor(Extractor):
    kind = DocumentKind.rtf
    name = "striprtf"
    isolated = True

    async def extract(self, source: Source, out: ExtractionOutput, run: Runner) -> AsyncIterator[Step]:
        text = await run(read_rtf, source.data)
        out.pages = 1
        out.assembler.add(text, kind=SegmentKind.body, method=Method.text_layer)
        if not text.strip():
            out.warnings.append("PAGE_EMPTY:1")
        yield Step(1, 1, "part")
