"""Text extraction agent: PDF (text layer or OCR), DOCX, images (OCR), plain text and audio (speech).

Stable error codes: EMPTY_FILE, FILE_TOO_LARGE (413), UNSUPPORTED_FORMAT (415), HTML_NOT_SUPPORTED
(415), TOO_MANY_PAGES, IMAGE_TOO_LARGE, CORRUPT_PDF, PDF_ENCRYPTED, PDF_PASSWORD_INCORRECT,
PDF_ENCRYPTION_UNSUPPORTED, CORRUPT_DOCX, DOCX_TOO_LARGE, ZIP_BOMB, CORRUPT_IMAGE, OCR_TIMEOUT,
OCR_FAILED, UNDECODABLE_TEXT, CORRUPT_AUDIO, AUDIO_TOO_LONG, AUDIO_DECODE_TIMEOUT (all 422 unless
said), OCR_UNAVAILABLE, AUDIO_UNAVAILABLE, SPEECH_UNAVAILABLE, FORMAT_UNAVAILABLE (503).
"""

from ai_med_extract.agents.text.agent import TextExtractionAgent
from ai_med_extract.agents.text.base import Extractor, Step
from ai_med_extract.agents.text.result import (
    DocumentKind,
    DocumentMetadata,
    ExtractedDocument,
    Method,
    Segment,
    SegmentKind,
)

__all__ = [
    "DocumentKind",
    "DocumentMetadata",
    "ExtractedDocument",
    "Extractor",
    "Method",
    "Segment",
    "SegmentKind",
    "Step",
    "TextExtractionAgent",
]
