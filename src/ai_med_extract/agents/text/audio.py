"""Audio (WAV, MP3, M4A, FLAC, OGG, ...): decoded by the ``ffmpeg`` binary to 16 kHz mono float32,
cut into chunks of about ``audio_chunk_s`` seconds, each transcribed through the model pool.

Chunks are cut at the quietest 50 ms within the last ``_CUT_SEARCH_S`` seconds before the nominal
boundary, so a cut rarely falls inside a word. Segment times are relative to the start of the file.

Errors (stable codes): ``AUDIO_TOO_LONG`` (422, longer than ``max_audio_seconds``; at most that much
plus one second is ever decoded), ``CORRUPT_AUDIO`` (422, ffmpeg cannot decode it, or it holds no
sound stream), ``AUDIO_DECODE_TIMEOUT`` (422), ``AUDIO_UNAVAILABLE`` (503, no ffmpeg binary),
``SPEECH_UNAVAILABLE`` (503, no model pool).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

import numpy as np

from ai_med_extract.agents.text.base import ExtractionOutput, Extractor, Runner, Source, Step
from ai_med_extract.agents.text.result import DocumentKind, Method, SegmentKind
from ai_med_extract.config import ExtractionSettings
from ai_med_extract.errors import ServiceUnavailable, Unprocessable
from ai_med_extract.inference.types import Transcript

SAMPLE_RATE = 16_000
_CUT_SEARCH_S = 5.0
_FRAME_S = 0.05
# ISO media files keep their index at the end, which a pipe cannot seek to: those go via a file.
_NEEDS_SEEK = frozenset({"audio/mp4", "video/mp4", "video/quicktime", "video/3gpp"})


class Transcriber(Protocol):
    """What audio extraction needs from the model pool (``inference.pool.ModelPool``)."""

    async def transcribe(self, audio: np.ndarray, *, model: str | None = None) -> Transcript: ...


def ffmpeg_available() -> bool:
    return shutil.which("ffmpeg") is not None


def decode_audio(data: bytes, media_type: str, *, max_seconds: float, timeout_s: float) -> np.ndarray:
    """Blocking: decode any audio ffmpeg understands to 16 kHz mono float32 samples in [-1, 1]."""
    if not ffmpeg_available():
        raise ServiceUnavailable("audio decoding is not installed on this server", code="AUDIO_UNAVAILABLE")
    limit = f"{max_seconds + 1.0:.3f}"
    output = ["-vn", "-t", limit, "-f", "f32le", "-acodec", "pcm_f32le", "-ac", "1", "-ar", str(SAMPLE_RATE)]
    base = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error"]
    try:
        if media_type in _NEEDS_SEEK:
            with tempfile.TemporaryDirectory(prefix="ame-audio-") as folder:
                path = Path(folder) / "input"
                path.write_bytes(data)
                path.chmod(0o600)
                done = subprocess.run(
                    [*base, "-i", str(path), *output, "pipe:1"],
                    capture_output=True,
                    timeout=timeout_s,
                    check=False,
                )
        else:
            done = subprocess.run(
                [*base, "-i", "pipe:0", *output, "pipe:1"],
                input=data,
                capture_output=True,
                timeout=timeout_s,
                check=False,
            )
    except subprocess.TimeoutExpired:
        raise Unprocessable(
            "decoding the audio took too long", code="AUDIO_DECODE_TIMEOUT", details={"timeout_s": timeout_s}
        ) from None
    if done.returncode != 0 or len(done.stdout) < 4:
        raise Unprocessable("the audio is corrupt or holds no sound", code="CORRUPT_AUDIO")
    samples = np.frombuffer(done.stdout[: len(done.stdout) // 4 * 4], dtype=np.float32).copy()
    if samples.size > max_seconds * SAMPLE_RATE:
        raise Unprocessable(
            "the audio is longer than allowed",
            code="AUDIO_TOO_LONG",
            details={"max_seconds": max_seconds},
        )
    np.clip(samples, -1.0, 1.0, out=samples)
    return samples


def chunk_bounds(samples: np.ndarray, chunk_s: float) -> list[tuple[int, int]]:
    """(start, end) sample indices of chunks at most ``chunk_s`` long, cut where it is quietest."""
    size = int(chunk_s * SAMPLE_RATE)
    search = min(int(_CUT_SEARCH_S * SAMPLE_RATE), size // 2)
    frame = int(_FRAME_S * SAMPLE_RATE)
    bounds: list[tuple[int, int]] = []
    start = 0
    total = samples.size
    while start < total:
        end = min(total, start + size)
        if end < total and search >= frame:
            window = samples[end - search : end]
            frames = window[: window.size // frame * frame].reshape(-1, frame)
            energy = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
            quietest = int(np.argmin(energy))
            end = end - search + quietest * frame + frame // 2
        bounds.append((start, end))
        start = end
    return bounds


class AudioExtractor(Extractor):
    kind = DocumentKind.audio
    name = "ffmpeg+speech"

    def __init__(self, settings: ExtractionSettings, transcriber: Transcriber | None):
        self._settings = settings
        self._transcriber = transcriber

    def is_available(self) -> bool:
        return self._transcriber is not None and ffmpeg_available()

    def separator(self) -> str:
        return "\n"

    async def extract(self, source: Source, out: ExtractionOutput, run: Runner) -> AsyncIterator[Step]:
        if self._transcriber is None:
            raise ServiceUnavailable("speech recognition is not configured", code="SPEECH_UNAVAILABLE")
        samples = await run(
            decode_audio,
            source.data,
            source.media_type,
            max_seconds=self._settings.max_audio_seconds,
            timeout_s=self._settings.audio_decode_timeout_s,
        )
        out.duration_s = round(samples.size / SAMPLE_RATE, 3)
        bounds = chunk_bounds(samples, self._settings.audio_chunk_s)
        for number, (start, end) in enumerate(bounds, start=1):
            offset = start / SAMPLE_RATE
            transcript = await self._transcriber.transcribe(
                samples[start:end], model=self._settings.speech_model
            )
            out.language = out.language or transcript.language
            out.model = out.model or transcript.model
            for segment in transcript.segments:
                text = segment.text.strip()
                if not text:
                    continue
                out.assembler.add(
                    text,
                    kind=SegmentKind.speech,
                    method=Method.speech,
                    confidence=segment.confidence,
                    page=number,
                    start_s=round(offset + max(0.0, segment.start_s), 3),
                    end_s=round(offset + max(0.0, segment.end_s), 3),
                )
            out.pages += 1
            yield Step(number, len(bounds), "chunk", "speech")
        if not out.assembler.segments:
            out.warnings.append("NO_SPEECH")
