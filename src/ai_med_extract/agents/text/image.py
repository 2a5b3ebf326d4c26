"""Images (PNG, JPEG, TIFF incl. multi-page, BMP, GIF, WebP, HEIC/HEIF photos through pillow-heif)
read with Tesseract, frame by frame.

The pixel count of every frame is checked from the header, before any pixel is decoded, so a
decompression bomb costs nothing. Errors: ``IMAGE_TOO_LARGE`` (422), ``TOO_MANY_PAGES`` (422),
``CORRUPT_IMAGE`` (422), plus the OCR errors of ``ocr.py``.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import AsyncIterator

from PIL import Image, ImageOps, UnidentifiedImageError

from ai_med_extract.agents.text.base import ExtractionOutput, Extractor, Runner, Source, Step
from ai_med_extract.agents.text.ocr import OcrEngine, OcrPage
from ai_med_extract.agents.text.pages import InlinePageRunner, PageRunner
from ai_med_extract.agents.text.result import DocumentKind, Method, SegmentKind
from ai_med_extract.config import ExtractionSettings
from ai_med_extract.errors import AppError, Unprocessable


def set_pillow_pixel_limit(max_pixels: int) -> None:
    """Make Pillow itself refuse (not merely warn about) images beyond the limit.

    Pillow warns above ``MAX_IMAGE_PIXELS`` and raises above twice that; our own header check stops
    anything above the limit first, so the warning threshold is set to the limit.
    """
    Image.MAX_IMAGE_PIXELS = max_pixels


def register_heif() -> None:
    """Let Pillow open HEIC/HEIF (phone photos of paper) when pillow-heif is installed."""
    try:
        from pillow_heif import register_heif_opener  # type: ignore[import-untyped]
    except ImportError:
        return
    register_heif_opener()


def too_large(pixels: int, limit: int) -> Unprocessable:
    return Unprocessable(
        "the image has more pixels than allowed",
        code="IMAGE_TOO_LARGE",
        details={"pixels": pixels, "max_pixels": limit},
    )


class ImageExtractor(Extractor):
    kind = DocumentKind.image
    name = "tesseract"

    def __init__(self, settings: ExtractionSettings, ocr: OcrEngine, pages: PageRunner | None = None):
        self._settings = settings
        self._ocr = ocr
        self._pages = pages or InlinePageRunner()
        set_pillow_pixel_limit(settings.max_image_pixels)
        register_heif()

    def is_available(self) -> bool:
        return self._ocr.is_available()

    async def extract(self, source: Source, out: ExtractionOutput, run: Runner) -> AsyncIterator[Step]:
        self._ocr.require()
        frames = await run(self._count_frames, source.data)
        if self._pages.workers > 1 and frames > 1:
            results = self._pages.results(read_image_frames, source.data, self._settings, frames, run)
        else:
            results = InlinePageRunner().results(self._read_frames, source.data, None, frames, run)
        async with contextlib.aclosing(results):
            async for index, page in results:
                self._add(out, index, page)
                yield Step(index + 1, frames, "page", "ocr")

    def _read_frames(self, data: bytes, _: object, frames: range) -> list[OcrPage]:
        return [self._read_frame(data, index) for index in frames]

    def _add(self, out: ExtractionOutput, index: int, page: OcrPage) -> None:
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


def read_image_frames(data: bytes, settings: ExtractionSettings, frames: range) -> list[OcrPage]:
    """A page-range task (runs in any process): OCR of the frames, in order."""
    reader = ImageExtractor(settings, OcrEngine(settings))
    return [reader._read_frame(data, index) for index in frames]


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
