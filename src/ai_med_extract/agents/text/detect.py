"""Choose the extractor from a file's content (magic bytes), never from its name or declared type.

Sniffed here: PDF, DOCX and ODT (ZIP containers told apart by their members), Word 97-2003 (an OLE2
compound file with a ``WordDocument`` stream), RTF, C-CDA / CDA R2 XML (a ``ClinicalDocument`` root in
the HL7 v3 namespace), FHIR JSON that can carry attachments (DocumentReference, Binary, Bundle), the
image and audio types ``filetype`` knows (HEIC/HEIF included) and text in UTF-8, a legacy code page,
or UTF-16/32 with or without a byte order mark.

Errors (stable codes): ``EMPTY_FILE`` (422), ``HTML_NOT_SUPPORTED`` (415, e.g. a web page saved with a
``.pdf`` name, or XML that is not a clinical document), ``UNSUPPORTED_FORMAT`` (415).
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass

import filetype  # type: ignore[import-untyped]

from ai_med_extract.agents.text.plain import wide_encoding
from ai_med_extract.agents.text.result import DocumentKind
from ai_med_extract.errors import Unprocessable, UnsupportedMediaType

DOCX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
ODT_MEDIA_TYPE = "application/vnd.oasis.opendocument.text"
DOC_MEDIA_TYPE = "application/msword"
RTF_MEDIA_TYPE = "application/rtf"
CDA_MEDIA_TYPE = "application/cda+xml"
FHIR_MEDIA_TYPE = "application/fhir+json"

_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_WORD_STREAM = "WordDocument".encode("utf-16-le")  # a directory entry name of a Word 97-2003 file
_CDA_ROOT = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?ClinicalDocument[\s>/]")
_HL7_V3 = b"urn:hl7-org:v3"
_FHIR_CARRIER = re.compile(rb'"resourceType"\s*:\s*"(?:DocumentReference|Binary|Bundle)"')

IMAGE_TYPES = frozenset(
    {"image/png", "image/jpeg", "image/tiff", "image/bmp", "image/gif", "image/webp", "image/heic", "image/heif"}
)
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
    if data.startswith(_OLE_MAGIC) and _WORD_STREAM in data[:1024 * 1024]:
        return Detected(DocumentKind.doc, DOC_MEDIA_TYPE)
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith(b"{\\rtf"):
        return Detected(DocumentKind.rtf, RTF_MEDIA_TYPE)
    if stripped.startswith(b"<") and _is_cda(data[:16384]):
        return Detected(DocumentKind.cda, CDA_MEDIA_TYPE)
    if stripped.startswith(b"{") and _FHIR_CARRIER.search(data[:65536]):
        return Detected(DocumentKind.fhir, FHIR_MEDIA_TYPE)
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
    if _looks_like_text(data[:8192]) or wide_encoding(data[:8192]) is not None:
        return Detected(DocumentKind.text, "text/plain")
    raise UnsupportedMediaType("this file type is not supported", code="UNSUPPORTED_FORMAT")


def _detect_zip(data: bytes) -> Detected:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
            mimetype = _small_member(archive, "mimetype") if "mimetype" in names else b""
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise Unprocessable("the ZIP container is corrupt", code="CORRUPT_DOCX") from None
    # The main part is usually word/document.xml, but only the content types make it a DOCX.
    if "[Content_Types].xml" in names and any(n.startswith("word/") for n in names):
        return Detected(DocumentKind.docx, DOCX_MEDIA_TYPE)
    # An OpenDocument package names its type in an uncompressed first member.
    if mimetype.strip() == ODT_MEDIA_TYPE.encode() and "content.xml" in names:
        return Detected(DocumentKind.odt, ODT_MEDIA_TYPE)
    raise UnsupportedMediaType(
        "ZIP archives other than DOCX and ODT are not supported",
        code="UNSUPPORTED_FORMAT",
        details={"detected": "zip"},
    )


def _small_member(archive: zipfile.ZipFile, name: str) -> bytes:
    info = archive.getinfo(name)
    return archive.read(name) if info.file_size <= 256 else b""


def _is_cda(head: bytes) -> bool:
    root = _CDA_ROOT.search(head)
    return root is not None and _HL7_V3 in head[root.start() :]


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
