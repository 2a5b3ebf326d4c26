"""The interface every format extractor implements.

An extractor is an async generator over the units of a document (pages, frames, audio chunks): it
runs each unit's blocking work through the given ``run`` (the job's worker pool), appends the unit's
text to ``ExtractionOutput.assembler`` and yields a ``Step``. Between steps the agent reports progress
and honours cancellation, so a 300-page scan can be stopped after any page.
"""

from __future__ import annotations

import base64
import binascii
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ai_med_extract.agents.medical.schema import MedicalExtraction
from ai_med_extract.agents.text.result import DocumentKind, DocumentSection, ExtractedDocument, TextAssembler
from ai_med_extract.errors import Unprocessable

if TYPE_CHECKING:
    from ai_med_extract.agents.text.pages import Deadline

Runner = Callable[..., Awaitable[Any]]
"""``await run(fn, *args)`` runs ``fn`` off the event loop (``JobContext.run_blocking``)."""


@dataclass(frozen=True, slots=True)
class Source:
    data: bytes
    media_type: str
    password: str | None = None
    depth: int = 0  # how deep inside container documents (FHIR, C-CDA attachments) this one sits
    deadline: Deadline | None = None  # past it, parsing this document is killed (pages.Deadline)


@dataclass(frozen=True, slots=True)
class Step:
    done: int
    total: int
    unit: str  # "page", "frame", "chunk", "part"
    detail: str = ""  # PHI-free, e.g. "ocr"


@dataclass
class ExtractionOutput:
    assembler: TextAssembler
    pages: int = 0
    ocr_pages: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    encoding: str | None = None
    duration_s: float | None = None
    language: str | None = None
    model: str | None = None
    sections: list[DocumentSection] = field(default_factory=list)
    structured: MedicalExtraction | None = None


Nested = Callable[[bytes, int, "Runner"], Awaitable[ExtractedDocument]]
"""``await nested(data, depth, run)``: extract an attachment as a document of its own type (within
the containing document's deadline, which ``run`` carries)."""


def add_document(out: ExtractionOutput, document: ExtractedDocument) -> None:
    """Append an extracted attachment's segments to ``out``, its pages numbered on from ``out``'s."""
    first_page = out.pages
    for segment in document.segments:
        out.assembler.add(
            document.segment_text(segment),
            kind=segment.kind,
            method=segment.method,
            confidence=segment.confidence,
            page=None if segment.page is None else first_page + segment.page,
            start_s=segment.start_s,
            end_s=segment.end_s,
            rotation=segment.rotation,
        )
    out.pages += max(1, document.metadata.pages)
    out.ocr_pages.extend(first_page + page for page in document.metadata.ocr_pages)
    out.warnings.extend(document.warnings)


class Extractor(ABC):
    kind: ClassVar[DocumentKind]
    name: ClassVar[str]
    # True: every ``run`` call parses the file with a library a hostile file can hold (pypdf, lxml,
    # striprtf, a converter), so the agent runs them in a parsing process under the document's
    # deadline (their functions and arguments must be picklable).
    isolated: ClassVar[bool] = False

    def is_available(self) -> bool:
        """False when a binary or library this extractor needs is missing."""
        return True

    def separator(self) -> str:
        """What goes between two segments in the full text."""
        return "\n\n"

    @abstractmethod
    def extract(self, source: Source, out: ExtractionOutput, run: Runner) -> AsyncIterator[Step]:
        """Append the document's segments to ``out`` unit by unit, yielding after each."""


def decode_base64(encoded: str) -> bytes:
    """An attachment's base64 text (whitespace allowed) as bytes; 422 ``ATTACHMENT_INVALID`` if it is not."""
    try:
        return base64.b64decode("".join(encoded.split()), validate=True)
    except (binascii.Error, ValueError):
        raise Unprocessable("an attachment is not valid base64", code="ATTACHMENT_INVALID") from None
