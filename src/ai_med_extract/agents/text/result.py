"""The result of text extraction: one full text plus segments that point into it.

Later agents cite character offsets into ``ExtractedDocument.text``; every segment's ``start``/``end``
satisfy ``text[start:end] == segment text`` exactly. ``TextAssembler`` is the only way segments are
made, so the offsets cannot drift from the text they describe.
"""

from __future__ import annotations

import re
from enum import StrEnum

from pydantic import BaseModel, Field

from ai_med_extract.agents.medical.schema import MedicalExtraction


class DocumentKind(StrEnum):
    pdf = "pdf"
    docx = "docx"
    image = "image"
    text = "text"
    audio = "audio"
    doc = "doc"  # Word 97-2003
    odt = "odt"  # OpenDocument text
    rtf = "rtf"
    cda = "cda"  # C-CDA / CDA R2 clinical document
    fhir = "fhir"  # FHIR DocumentReference / Binary / Bundle carrying attachments


class Method(StrEnum):
    text_layer = "text_layer"  # text the file carries (PDF text layer, DOCX, plain text)
    ocr = "ocr"  # Tesseract on a rendered page or an image
    speech = "speech"  # speech recognition


class SegmentKind(StrEnum):
    page = "page"  # a PDF page, an image frame, a plain-text file
    header = "header"  # DOCX page header
    body = "body"  # DOCX body
    footer = "footer"  # DOCX page footer
    speech = "speech"  # a stretch of recognised speech
    section = "section"  # a C-CDA section (title and narrative)
    note = "note"  # DOCX footnotes, endnotes and comments


class Segment(BaseModel):
    index: int = Field(description="Position of the segment in the document, from 0")
    kind: SegmentKind
    start: int = Field(ge=0, description="Offset of the first character in the full text")
    end: int = Field(ge=0, description="Offset just past the last character (exclusive)")
    method: Method
    confidence: float | None = Field(None, ge=0, le=1, description="0..1; None where the method has none")
    page: int | None = Field(None, ge=1, description="Page or frame number, from 1")
    start_s: float | None = Field(None, ge=0, description="Speech: start time in seconds")
    end_s: float | None = Field(None, ge=0, description="Speech: end time in seconds")
    rotation: int | None = Field(None, description="OCR: degrees the page was turned before recognition")


class DocumentMetadata(BaseModel):
    kind: DocumentKind
    media_type: str
    size_bytes: int
    sha256: str
    pages: int = Field(description="Pages, frames or audio chunks processed")
    words: int
    characters: int
    ocr_pages: list[int] = Field(default_factory=list, description="Page numbers (from 1) read by OCR")
    encoding: str | None = Field(None, description="Plain text: the detected character encoding")
    duration_s: float | None = Field(None, description="Audio: decoded length in seconds")
    language: str | None = None
    model: str | None = Field(None, description="Speech: the model that transcribed the audio")


class DocumentSection(BaseModel):
    """A coded section of a structured document (C-CDA): where it sits in the full text."""

    title: str
    code: str | None = Field(None, description="Section code, e.g. LOINC 11450-4 (problem list)")
    code_system: str | None = Field(None, description="Code system URI (FHIR canonical) or urn:oid")
    category: str | None = Field(None, description="Section category as medical extraction names it")
    start: int = Field(ge=0)
    end: int = Field(ge=0)
    source_path: str = Field(description="XPath-like path of the section element")


class ExtractedDocument(BaseModel):
    text: str
    segments: list[Segment]
    methods: list[Method] = Field(description="Methods used, in order of first use")
    confidence: float | None = Field(
        None, ge=0, le=1, description="Character-weighted mean of the segments' confidences"
    )
    metadata: DocumentMetadata
    warnings: list[str] = Field(default_factory=list, description="PHI-free codes, e.g. PAGE_EMPTY:3")
    sections: list[DocumentSection] = Field(default_factory=list, description="C-CDA: coded sections")
    structured: MedicalExtraction | None = Field(
        None, description="C-CDA: structured entries as medical data, offsets into `text`"
    )

    def segment_text(self, segment: Segment) -> str:
        return self.text[segment.start : segment.end]


_WORD = re.compile(r"\w+(?:[-'’.]\w+)*")


def count_words(text: str) -> int:
    return sum(1 for _ in _WORD.finditer(text))


class TextAssembler:
    """Appends segment texts with a separator and records their exact offsets."""

    def __init__(self, separator: str = "\n\n"):
        self._separator = separator
        self._pieces: list[str] = []
        self._length = 0
        self.segments: list[Segment] = []

    def add(
        self,
        text: str,
        *,
        kind: SegmentKind,
        method: Method,
        confidence: float | None = None,
        page: int | None = None,
        start_s: float | None = None,
        end_s: float | None = None,
        rotation: int | None = None,
    ) -> Segment:
        if self.segments:
            self._pieces.append(self._separator)
            self._length += len(self._separator)
        start = self._length
        self._pieces.append(text)
        self._length += len(text)
        segment = Segment(
            index=len(self.segments),
            kind=kind,
            start=start,
            end=self._length,
            method=method,
            confidence=None if confidence is None else max(0.0, min(1.0, confidence)),
            page=page,
            start_s=start_s,
            end_s=end_s,
            rotation=rotation,
        )
        self.segments.append(segment)
        return segment

    @property
    def text(self) -> str:
        return "".join(self._pieces)

    def methods(self) -> list[Method]:
        seen: list[Method] = []
        for segment in self.segments:
            if segment.method not in seen:
                seen.append(segment.method)
        return seen

    def confidence(self) -> float | None:
        weighted = [
            (s.confidence, max(1, s.end - s.start)) for s in self.segments if s.confidence is not None
        ]
        if not weighted:
            return None
        total = sum(w for _, w in weighted)
        return round(sum(c * w for c, w in weighted) / total, 4)
