"""Images (PNG, JPEG, TIFF incl. multi-page, BMP, GIF, WebP) read with Tesseract, frame by frame.

The pixel count of every frame is checked from the header, before any pixel is decoded, so a
decompression bomb costs nothing. Errors: ``IMAGE_TOO_LARGE`` (422), ``TOO_MANY_PAGES`` (422),
``CORRUPT_IMAGE`` (422), plus the OCR errors of ``ocr.py``.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import AsyncIterator

from PIL import Image, ImageOps, UnidentifiedImageError

from ai_med_extract.agents.text.base import ExtractionOutput, Extractor, Runner, Source, Step
from ai_med_extract.agents.text.ocr import OcrEngine, OcrPage
from ai_med_extract.agents.text.result import DocumentKind, Method, SegmentKind
from ai_med_extract.config import ExtractionSettings
from ai_med_extract.errors import AppError, Unprocessable


def set_pillow_pixel_limit(max_pixels: int) -> None:
    """Make Pillow itself refuse (not merely warn about) images beyond the limit.

    Pillow warns above ``MAX_IMAGE_PIXELS`` and raises above twice that; our own header check stops
    anything above the limit first, so the warning threshold is set to the limit.
    """
    Image.MAX_IMAGE_PIXELS = max_pixels


def too_large(pixels: int, limit: int) -> Unprocessable:
    return Unprocessable(
        "the image has more pixels than allowed",
        code="IMAGE_TOO_LARGE",
        details={"pixels": pixels, "max_pixels": limit},
    )


class ImageExtractor(Extractor):
    kind = DocumentKind.image
    name = "tesseract"

    def __init__(self, settings: ExtractionSettings, ocr: OcrEngine):
        self._settings = settings
        self._ocr = ocr
        set_pillow_pixel_limit(settings.max_image_pixels)

    def is_available(self) -> bool:
        return self._ocr.is_available()

    async def extract(self, source: Source, out: ExtractionOutput, run: Runner) -> AsyncIterator[Step]:
        self._ocr.require()
        frames = await run(self._count_frames, source.data)
        for index in range(frames):
            page = await run(self._read_frame, source.data, index)
            out.assembler.add(
                page.text,
                kind=SegmentKind.page,
                method=Method.ocr,
                confidence=page.confidence,
                page=index + 1,
                rotation=page.rotation,
            )
            out.ocr_pages.append(index + 1)
            out.pages += 1
            if not page.text:
                out.warnings.append(f"PAGE_EMPTY:{index + 1}")
            yield Step(index + 1, frames, "page", "ocr")

    def _open(self, data: bytes) -> Image.Image:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image = Image.open(io.BytesIO(data))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise too_large(-1, self._settings.max_image_pixels) from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            raise Unprocessable("the image is corrupt or truncated", code="CORRUPT_IMAGE") from None
        self._check_pixels(image)
        return image

    def _check_pixels(self, image: Image.Image) -> None:
        width, height = image.size
        if width <= 0 or height <= 0:
            raise Unprocessable("the image is corrupt or truncated", code="CORRUPT_IMAGE")
        if width * height > self._settings.max_image_pixels:
            raise too_large(width * height, self._settings.max_image_pixels)

    def _count_frames(self, data: bytes) -> int:
        with self._open(data) as image:
            frames = int(getattr(image, "n_frames", 1) or 1)
        if frames > self._settings.max_pages:
            raise Unprocessable(
                "the image has more pages than allowed",
                code="TOO_MANY_PAGES",
                details={"pages": frames, "max_pages": self._settings.max_pages},
            )
        return frames

    def _read_frame(self, data: bytes, index: int) -> OcrPage:
        """Blocking: decode one frame (after checking its size) and OCR it."""
        with self._open(data) as image:
            try:
                if index:
                    image.seek(index)
                self._check_pixels(image)  # each TIFF frame has its own size
                with warnings.catch_warnings():
                    warnings.simplefilter("error", Image.DecompressionBombWarning)
                    image.load()
                frame = _flatten(image)
                dpi = _dpi(image)
            except AppError:
                raise
            except (Image.DecompressionBombError, Image.DecompressionBombWarning):
                raise too_large(-1, self._settings.max_image_pixels) from None
            except (OSError, ValueError, EOFError, SyntaxError):
                raise Unprocessable("the image is corrupt or truncated", code="CORRUPT_IMAGE") from None
        return self._ocr.recognize(frame, dpi=dpi)


def _dpi(image: Image.Image) -> int | None:
    value = image.info.get("dpi")
    try:
        return int(round(float(value[0]))) if value else None
    except (TypeError, ValueError, IndexError):
        return None


def _flatten(image: Image.Image) -> Image.Image:
    """Grayscale copy, EXIF rotation applied; transparent areas become white."""
    image = ImageOps.exif_transpose(image) or image
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("L")
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return image.convert("I").point(lambda v: v / 256).convert("L")
    return image.convert("L")
