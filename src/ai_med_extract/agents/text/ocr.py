"""Tesseract OCR of one page image: orientation, preprocessing, text and confidence in one pass.

Errors (stable codes): ``OCR_TIMEOUT`` (422, a page took longer than ``ocr_timeout_s``),
``OCR_FAILED`` (422, Tesseract rejected the image), ``OCR_UNAVAILABLE`` (503, no tesseract binary).
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass

import numpy as np
import pytesseract  # type: ignore[import-untyped]
from PIL import Image, ImageOps

from ai_med_extract.config import ExtractionSettings
from ai_med_extract.errors import ServiceUnavailable, Unprocessable

logger = logging.getLogger(__name__)

# Orientation detection needs this much script to be trusted; below it the page is read as it is.
_MIN_ORIENTATION_CONFIDENCE = 1.5
# A first reading this sure of itself is kept without orientation detection.
_CONFIDENT_MEAN = 0.75
_CONFIDENT_WORDS = 3
# OSD does not need full resolution; a smaller copy is several times faster.
_OSD_MAX_SIDE = 1800


@dataclass(frozen=True, slots=True)
class OcrPage:
    text: str
    confidence: float | None  # 0..1, mean word confidence; None when no word was found
    rotation: int  # degrees (clockwise) the image was turned before recognition
    words: int


class OcrEngine:
    def __init__(self, settings: ExtractionSettings):
        self._language = settings.ocr_language
        self._timeout = settings.ocr_timeout_s
        self._orientation = settings.ocr_detect_orientation
        self._preprocess = settings.ocr_preprocess

    def is_available(self) -> bool:
        return shutil.which(pytesseract.pytesseract.tesseract_cmd) is not None

    def require(self) -> None:
        if not self.is_available():
            raise ServiceUnavailable("OCR is not installed on this server", code="OCR_UNAVAILABLE")

    def recognize(self, image: Image.Image, *, dpi: int | None = None) -> OcrPage:
        """Blocking: run in the worker pool. ``dpi``: the scan's resolution when known.

        Most pages are upright, so the page is read as it is first; only when that reading is
        unsure is the orientation detected, and the page read again turned upright.
        """
        self.require()
        gray = ImageOps.grayscale(image) if image.mode != "L" else image
        dpi_option = f" --dpi {int(dpi)}" if dpi and 70 <= dpi <= 2400 else ""
        prepared = binarize(gray) if self._preprocess else gray
        first = self._read(prepared, dpi_option, rotation=0)
        if not self._orientation or _confident(first):
            return first
        rotation = self._detect_rotation(gray, dpi_option)
        if not rotation:
            return first
        # PIL turns counter-clockwise for positive angles; Tesseract reports the clockwise turn.
        turned = prepared.rotate(-rotation, expand=True, fillcolor=255)
        second = self._read(turned, dpi_option, rotation=rotation)
        return second if _score(second) >= _score(first) else first

    def _read(self, prepared: Image.Image, dpi_option: str, *, rotation: int) -> OcrPage:
        data = self._call(
            pytesseract.image_to_data,
            prepared,
            lang=self._language,
            config="--psm 3" + dpi_option,
            output_type=pytesseract.Output.DICT,
        )
        text, confidence, words = _assemble(data)
        return OcrPage(text=text, confidence=confidence, rotation=rotation, words=words)

    def _detect_rotation(self, gray: Image.Image, dpi_option: str) -> int:
        small = gray
        longest = max(gray.size)
        if longest > _OSD_MAX_SIDE:
            scale = _OSD_MAX_SIDE / longest
            dpi_option = ""
            small = gray.resize((max(1, int(gray.width * scale)), max(1, int(gray.height * scale))))
        try:
            osd = self._call(
                pytesseract.image_to_osd,
                small,
                config="--psm 0" + dpi_option,
                output_type=pytesseract.Output.DICT,
            )
        except Unprocessable as exc:
            if exc.code == "OCR_TIMEOUT":
                raise
            return 0  # too little text to tell the orientation: read the page as it is
        rotate = int(osd.get("rotate", 0)) % 360
        if float(osd.get("orientation_conf", 0.0)) < _MIN_ORIENTATION_CONFIDENCE:
            return 0
        return rotate

    def _call(self, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            return fn(*args, timeout=self._timeout, **kwargs)
        except pytesseract.TesseractNotFoundError:
            raise ServiceUnavailable("OCR is not installed on this server", code="OCR_UNAVAILABLE") from None
        except pytesseract.TesseractError:  # a RuntimeError too: test it first
            raise Unprocessable("OCR could not read a page image", code="OCR_FAILED") from None
        except RuntimeError as exc:
            if "timeout" in str(exc).lower():  # pytesseract killed the process
                raise Unprocessable(
                    "OCR of a page took too long",
                    code="OCR_TIMEOUT",
                    details={"timeout_s": self._timeout},
                ) from None
            raise


def _confident(page: OcrPage) -> bool:
    return page.words >= _CONFIDENT_WORDS and (page.confidence or 0.0) >= _CONFIDENT_MEAN


def _score(page: OcrPage) -> float:
    return (page.confidence or 0.0) * page.words


def binarize(gray: Image.Image) -> Image.Image:
    """Stretch contrast, then threshold at Otsu's level (black text on white)."""
    stretched = ImageOps.autocontrast(gray, cutoff=1)
    pixels = np.asarray(stretched, dtype=np.uint8)
    level = otsu_threshold(pixels)
    return Image.fromarray(np.where(pixels > level, 255, 0).astype(np.uint8), mode="L")


def otsu_threshold(pixels: np.ndarray) -> int:
    hist = np.bincount(pixels.ravel(), minlength=256).astype(np.float64)
    total = hist.sum()
    if total == 0:
        return 127
    levels = np.arange(256, dtype=np.float64)
    weight_low = np.cumsum(hist)
    weight_high = total - weight_low
    mean_low_sum = np.cumsum(hist * levels)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_low = mean_low_sum / weight_low
        mean_high = (mean_low_sum[-1] - mean_low_sum) / weight_high
        between = weight_low * weight_high * (mean_low - mean_high) ** 2
    between = np.nan_to_num(between)
    if not between.any():
        return 127
    return int(np.argmax(between))


def _assemble(data: dict[str, list]) -> tuple[str, float | None, int]:
    """Rebuild plain text from Tesseract's word table: words, lines, paragraphs."""
    out: list[str] = []
    confidences: list[float] = []
    previous: tuple[int, int, int] | None = None
    for i, word in enumerate(data.get("text", [])):
        word = (word or "").strip()
        if not word or int(data["level"][i]) != 5:
            continue
        key = (int(data["block_num"][i]), int(data["par_num"][i]), int(data["line_num"][i]))
        if previous is not None:
            if key[:2] != previous[:2]:
                out.append("\n\n")
            elif key != previous:
                out.append("\n")
            else:
                out.append(" ")
        out.append(word)
        previous = key
        conf = float(data["conf"][i])
        if conf >= 0:
            confidences.append(conf)
    confidence = round(sum(confidences) / len(confidences) / 100.0, 4) if confidences else None
    return "".join(out), confidence, len(confidences)
