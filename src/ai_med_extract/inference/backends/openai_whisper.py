"""Speech to text with openai-whisper (PyTorch ``.pt`` checkpoints).

Weights come from a ``.pt`` file (``path``, ``package`` or the hub cache) or from an official
``checkpoint`` name (``tiny.en``, ``base`` ...) that openai-whisper downloads into
``<cache_dir>/whisper`` when runtime downloads are allowed; offline, the file must already be there.
"""

from __future__ import annotations

import gc
import threading
from pathlib import Path

import numpy as np

from ai_med_extract.inference.backends.base import GenerationCancelled, SpeechBackend
from ai_med_extract.inference.catalogue import ModelType
from ai_med_extract.inference.errors import DownloadDisabled, ModelLoadFailed
from ai_med_extract.inference.types import Transcript, TranscriptSegment

SAMPLE_RATE = 16_000


class OpenAIWhisperBackend(SpeechBackend):
    kind = ModelType.openai_whisper
    requires = ("whisper", "torch")

    def _checkpoint(self) -> str:
        if self.ctx.source is not None:
            return str(self.ctx.source.path)
        name = self.entry.checkpoint or ""
        folder = self.ctx.cache_dir / "whisper"
        cached = folder / f"{name}.pt"
        if cached.exists() or self.ctx.allow_downloads:
            return name  # openai-whisper verifies (or downloads) it in download_root
        raise DownloadDisabled(
            f"model {self.entry.name!r}: openai-whisper checkpoint {name!r} is not in {folder} and runtime "
            f'downloads are disabled. Copy {name}.pt into {folder}, set "path" for this model in the model '
            "catalogue, or allow runtime downloads",
            details={"model": self.entry.name, "cache_dir": str(folder)},
        )

    def load(self) -> None:
        import whisper

        device = self.entry.device or ("cuda" if self.ctx.profile.device == "cuda" else "cpu")
        checkpoint = self._checkpoint()
        try:
            self.model = whisper.load_model(
                checkpoint, device=device, download_root=str(Path(self.ctx.cache_dir) / "whisper")
            )
        except (RuntimeError, OSError, KeyError, ValueError) as exc:
            raise ModelLoadFailed(
                f"model {self.entry.name!r}: openai-whisper could not load the checkpoint ({type(exc).__name__})",
                details={"model": self.entry.name},
            ) from exc
        self.device = device

    def unload(self) -> None:
        if hasattr(self, "model"):
            del self.model
        gc.collect()

    def memory_bytes(self) -> int | None:
        tensors = [*self.model.parameters(), *self.model.buffers()]
        return sum(t.numel() * t.element_size() for t in tensors)

    def transcribe(self, audio: np.ndarray, cancel: threading.Event) -> Transcript:
        if cancel.is_set():
            raise GenerationCancelled
        result = self.model.transcribe(
            audio,
            language=self.entry.language,
            fp16=self.device == "cuda",
            temperature=0.0,
            condition_on_previous_text=False,
            verbose=None,
        )
        if cancel.is_set():
            raise GenerationCancelled
        segments = tuple(
            TranscriptSegment(
                start_s=float(seg["start"]),
                end_s=float(seg["end"]),
                text=str(seg["text"]).strip(),
                confidence=float(np.exp(seg["avg_logprob"])),
            )
            for seg in result.get("segments", [])
        )
        return Transcript(
            segments=segments,
            language=str(result.get("language") or self.entry.language or ""),
            duration_s=float(len(audio)) / SAMPLE_RATE,
            model=self.entry.name,
            backend=self.kind.value,
        )
