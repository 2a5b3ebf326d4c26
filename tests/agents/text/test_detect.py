from __future__ import annotations

import pytest

from ai_med_extract.agents.text.detect import detect
from ai_med_extract.agents.text.result import DocumentKind
from ai_med_extract.errors import AppError
from tests.fixtures import documents as docs


@pytest.mark.parametrize(
    ("data", "kind", "media_type"),
    [
        (docs.text_pdf([["x"]]), DocumentKind.pdf, "application/pdf"),
        (b"junk before header\n" + docs.text_pdf([["x"]]), DocumentKind.pdf, "application/pdf"),
        (
            docs.clinic_docx(),
            DocumentKind.docx,
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ),
        (docs.image_bytes(docs.page_image(["x"])), DocumentKind.image, "image/png"),
        (docs.image_bytes(docs.page_image(["x"]), "JPEG"), DocumentKind.image, "image/jpeg"),
        (docs.multipage_tiff([["x"], ["y"]]), DocumentKind.image, "image/tiff"),
        (docs.tone_wav(0.5), DocumentKind.audio, "audio/x-wav"),
        (b"Plain clinical note.\n", DocumentKind.text, "text/plain"),
        ("Note".encode("utf-16"), DocumentKind.text, "text/plain"),
    ],
    ids=["pdf", "pdf-offset", "docx", "png", "jpeg", "tiff", "wav", "text", "utf16"],
)
def test_format_is_chosen_by_content(data: bytes, kind: DocumentKind, media_type: str) -> None:
    detected = detect(data)

    assert (detected.kind, detected.media_type) == (kind, media_type)


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (b"", 422, "EMPTY_FILE"),
        (docs.HTML_AS_PDF, 415, "HTML_NOT_SUPPORTED"),
        (b"\xef\xbb\xbf  <html><body>x</body></html>", 415, "HTML_NOT_SUPPORTED"),
        (b"\x7fELF\x02\x01\x01" + b"\x00" * 100, 415, "UNSUPPORTED_FORMAT"),
    ],
    ids=["empty", "html-as-pdf", "html-with-bom", "executable"],
)
def test_hostile_or_unknown_content_gets_a_stable_code(data: bytes, status: int, code: str) -> None:
    with pytest.raises(AppError) as caught:
        detect(data)

    assert (caught.value.status_code, caught.value.code) == (status, code)
