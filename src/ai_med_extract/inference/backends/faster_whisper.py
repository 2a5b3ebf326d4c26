"""Speech to text with faster-whisper (CTranslate2 Whisper weights in a folder)."""

from __future__ import annotations

import gc
import threading

import numpy as np

from ai_med_extract.inference.backends.base import GenerationCancelled, SpeechBackend
from ai_med_extract.inference.catalogue import ModelType
from ai_med_extract.inference.errors import ModelLoadFailed
from ai_med_extract.inference.types import Transcript, TranscriptSegment

SAMPLE_RATE = 16_000


class FasterWhisperBackend(SpeechBackend):
    kind = ModelType.faster_whisper
    requires = ("faster_whisper",)

    def load(self) -> None:
        from faster_whisper import WhisperModel

        assert self.ctx.source is not None
        device = self.entry.device or ("cuda" if self.ctx.profile.device == "cuda" else "cpu")
        compute_type = self.entry.compute_type or ("float16" if device == "cuda" else "int8")
        try:
            self.model = WhisperModel(
                str(self.ctx.source.path),
                device=device,
                compute_type=compute_type,
                cpu_threads=self.ctx.profile.n_threads,
                local_files_only=True,
                **self.entry.options,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelLoadFailed(
                f"model {self.entry.name!r}: faster-whisper could not load the weights ({type(exc).__name__})",
                details={"model": self.entry.name},
            ) from exc
        self.device = device

    def unload(self) -> None:
        if hasattr(self, "model"):
            del self.model
        gc.collect()

    def transcribe(self, audio: np.ndarray, cancel: threading.Event) -> Transcript:
        segments_iter, info = self.model.transcribe(
            audio,
            language=self.entry.language,
            beam_size=1,
            vad_filter=False,
            condition_on_previous_text=False,
        )
        segments: list[TranscriptSegment] = []
        for seg in segments_iter:  # decoding happens lazily, segment by segment
            if cancel.is_set():
                raise GenerationCancelled
            segments.append(
                TranscriptSegment(
                    start_s=float(seg.start),
                    end_s=float(seg.end),
                    text=seg.text.strip(),
                    confidence=float(np.exp(seg.avg_logprob)),
                )
            )
        return Transcript(
            segments=tuple(segments),
            language=info.language,
            duration_s=float(len(audio)) / SAMPLE_RATE,
            model=self.entry.name,
            backend=self.kind.value,
        )
