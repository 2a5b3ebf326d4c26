from __future__ import annotations

import pytest
from PIL import Image

from ai_med_extract.agents.text import Method, TextExtractionAgent
from ai_med_extract.config import ExtractionSettings
from ai_med_extract.errors import AppError
from tests.fixtures import documents as docs
from tests.support import OCR_MAX_CER, assert_read, character_error_rate

PAGE = [
    "Patient has diabetes mellitus type 2",
    "Metformin 500 mg twice daily",
    "Blood pressure was elevated at the visit",
    "Follow up with primary care in two weeks",
    "Allergies: penicillin causes a rash",
]


@pytest.mark.parametrize("rotate", [90, 180, 270])
async def test_rotated_scan_is_turned_upright_before_ocr(agent: TextExtractionAgent, rotate: int) -> None:
    data = docs.image_bytes(docs.page_image(PAGE, rotate=rotate))

    result = await agent.extract(data)

    assert character_error_rate(" ".join(PAGE), result.text) <= OCR_MAX_CER, result.text
    # The page was turned `rotate` degrees clockwise; undoing it is the remaining turn (Tesseract
    # reads some sideways pages well enough as they are, and then nothing is turned).
    assert result.segments[0].rotation in {0, (360 - rotate) % 360}
    if rotate == 180:
        assert result.segments[0].rotation == 180
    assert result.methods == [Method.ocr]


@pytest.mark.parametrize(
    ("fmt", "params", "media_type"),
    [
        ("PNG", {}, "image/png"),
        ("JPEG", {"quality": 90}, "image/jpeg"),
        ("BMP", {}, "image/bmp"),
        ("TIFF", {}, "image/tiff"),
    ],
)
async def test_each_image_format_is_read_with_a_confidence(
    agent: TextExtractionAgent, fmt: str, params: dict[str, object], media_type: str
) -> None:
    data = docs.image_bytes(docs.page_image(PAGE[:2]), fmt, **params)

    result = await agent.extract(data)

    assert_read("\n".join(PAGE[:2]), result.text)
    assert result.metadata.media_type == media_type
    assert result.confidence is not None and result.confidence > 0.8


async def test_multipage_tiff_gives_one_segment_per_frame(agent: TextExtractionAgent) -> None:
    data = docs.multipage_tiff([["Page one: admission note"], ["Page two: medication list"], ["Page three"]])

    result = await agent.extract(data)

    frames = ["Page one: admission note", "Page two: medication list", "Page three"]
    assert len(result.segments) == len(frames)
    for frame, segment in zip(frames, result.segments, strict=True):
        assert_read(frame, result.segment_text(segment))
    assert_read("\n\n".join(frames), result.text)
    assert result.metadata.ocr_pages == [1, 2, 3]
    assert all(s.confidence is not None for s in result.segments)


async def test_transparent_png_is_read_on_white(agent: TextExtractionAgent) -> None:
    page = docs.page_image(PAGE[:1]).convert("L")
    rgba = Image.new("RGBA", page.size, (0, 0, 0, 0))
    rgba.putalpha(Image.eval(page, lambda v: 255 - v))  # black text, fully transparent background

    result = await agent.extract(docs.image_bytes(rgba))

    assert_read(PAGE[0], result.text)


async def test_blank_image_gives_empty_text_and_a_warning(agent: TextExtractionAgent) -> None:
    result = await agent.extract(docs.image_bytes(Image.new("L", (800, 600), 255)))

    assert result.text == ""
    assert result.warnings == ["PAGE_EMPTY:1"]


async def test_decompression_bomb_is_refused_from_its_header(agent: TextExtractionAgent) -> None:
    with pytest.raises(AppError) as caught:
        await agent.extract(docs.png_claiming_size(100_000, 100_000))

    assert (caught.value.status_code, caught.value.code) == (422, "IMAGE_TOO_LARGE")


async def test_image_over_the_pixel_limit_is_refused() -> None:
    agent = TextExtractionAgent(ExtractionSettings(max_image_pixels=500_000), max_bytes=10**7)

    with pytest.raises(AppError) as caught:
        await agent.extract(docs.image_bytes(docs.page_image(PAGE)))

    assert caught.value.code == "IMAGE_TOO_LARGE"
    assert caught.value.details["max_pixels"] == 500_000


async def test_tiff_with_more_frames_than_allowed_is_refused() -> None:
    agent = TextExtractionAgent(ExtractionSettings(max_pages=2), max_bytes=10**7)

    with pytest.raises(AppError) as caught:
        await agent.extract(docs.multipage_tiff([["one"], ["two"], ["three"]]))

    assert (caught.value.code, caught.value.details["pages"]) == ("TOO_MANY_PAGES", 3)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(docs.image_bytes(docs.page_image(PAGE))[:400], id="truncated-png"),
        pytest.param(docs.image_bytes(docs.page_image(PAGE), "JPEG")[:300], id="truncated-jpeg"),
        pytest.param(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, id="header-only"),
    ],
)
async def test_corrupt_image_is_refused_with_a_stable_code(agent: TextExtractionAgent, data: bytes) -> None:
    with pytest.raises(AppError) as caught:
        await agent.extract(data)

    assert (caught.value.status_code, caught.value.code) == (422, "CORRUPT_IMAGE")


async def test_ocr_timeout_on_an_image_has_a_stable_code() -> None:
    agent = TextExtractionAgent(ExtractionSettings(ocr_timeout_s=0.01), max_bytes=10**7)

    with pytest.raises(AppError) as caught:
        await agent.extract(docs.image_bytes(docs.page_image(PAGE)))

    assert (caught.value.status_code, caught.value.code) == (422, "OCR_TIMEOUT")
