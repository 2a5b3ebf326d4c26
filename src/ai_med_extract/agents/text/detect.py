"""Choose the extractor from a file's content (magic bytes), never from its name or declared type.

Errors (stable codes): ``EMPTY_FILE`` (422), ``HTML_NOT_SUPPORTED`` (415, e.g. a web page saved with a
``.pdf`` name), ``UNSUPPORTED_FORMAT`` (415).
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

import filetype  # type: ignore[import-untyped]

from ai_med_extract.agents.text.result import DocumentKind
from ai_med_extract.errors import Unprocessable, UnsupportedMediaType

DOCX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"

IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/tiff", "image/bmp", "image/gif", "image/webp"})
AUDIO_TYPES = frozenset(
    {
        "audio/x-wav",
        "audio/mpeg",
        "audio/mp4",
        "audio/x-flac",
        "audio/ogg",
        "audio/aac",
        "audio/x-aiff",
        "video/mp4",
        "video/webm",
        "video/x-matroska",
        "video/quicktime",
        "video/3gpp",
    }
)

_HTML_MARKERS = (b"<!doctype html", b"<html", b"<head", b"<body", b"<script", b"<?xml", b"<svg")


@dataclass(frozen=True, slots=True)
class Detected:
    kind: DocumentKind
    media_type: str


def detect(data: bytes) -> Detected:
    if not data:
        raise Unprocessable("the file is empty", code="EMPTY_FILE")
    head = data[:1024]
    # PDF readers accept the header anywhere in the first kilobyte (some writers prepend junk).
    if b"%PDF-" in head:
        return Detected(DocumentKind.pdf, "application/pdf")
    if data.startswith(b"PK\x03\x04"):
        return _detect_zip(data)
    guess = filetype.guess(data[:8192])
    if guess is not None:
        if guess.mime in IMAGE_TYPES:
            return Detected(DocumentKind.image, guess.mime)
        if guess.mime in AUDIO_TYPES:
            return Detected(DocumentKind.audio, guess.mime)
        raise UnsupportedMediaType(
            "this file type is not supported", code="UNSUPPORTED_FORMAT", details={"detected": guess.mime}
        )
    if _looks_like_markup(head):
        raise UnsupportedMediaType(
            "the file is an HTML or XML page, not a document; export it as PDF or text",
            code="HTML_NOT_SUPPORTED",
        )
    if _looks_like_text(data[:8192]):
        return Detected(DocumentKind.text, "text/plain")
    raise UnsupportedMediaType("this file type is not supported", code="UNSUPPORTED_FORMAT")


def _detect_zip(data: bytes) -> Detected:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        raise Unprocessable("the ZIP container is corrupt", code="CORRUPT_DOCX") from None
    # The main part is usually word/document.xml, but only the content types make it a DOCX.
    if "[Content_Types].xml" in names and any(n.startswith("word/") for n in names):
        return Detected(DocumentKind.docx, DOCX_MEDIA_TYPE)
    raise UnsupportedMediaType(
        "ZIP archives other than DOCX are not supported",
        code="UNSUPPORTED_FORMAT",
        details={"detected": "zip"},
    )


def _looks_like_markup(head: bytes) -> bool:
    lowered = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if not lowered.startswith(b"<"):
        return False
    return any(marker in lowered[:512] for marker in _HTML_MARKERS)


def _looks_like_text(sample: bytes) -> bool:
    if sample.startswith((b"\xff\xfe", b"\xfe\xff", b"\xef\xbb\xbf")):
        return True
    if b"\x00" in sample:
        return False
    controls = sum(1 for b in sample if b < 32 and b not in (9, 10, 12, 13, 27))
    return controls <= max(1, len(sample) // 100)
