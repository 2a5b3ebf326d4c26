"""The model pool: the one front door to every model; agents and routes only ask it.

It answers generation, streaming, transcription and token counts, and manages which models are
loaded. The work is done by three parts, each in its own module:

- :mod:`.residency`: loading on first use, the count and memory limits, least-recently-used
  eviction, one request at a time per model with a bounded wait queue (``MODEL_BUSY``).
- :mod:`.bridge`: backend code runs in worker threads with a deadline; timeouts and client
  disconnects set a cancel flag the backend checks between tokens; backend exceptions become the
  product's errors in one place.
- :mod:`.fallback`: a model that cannot be loaded or fails gives way to its configured fallback,
  then to the runtime fallback model, then to the text-based fallback; every step is reported.

Prompts are measured with the model's own tokenizer before generation (``CONTEXT_OVERFLOW``).
Backends named in ``isolated_backends`` (llama.cpp by default) run in a child process
(:mod:`.host`): a native crash there fails that call with ``INFERENCE_CRASHED`` and the next call
starts a new child; the service and its other jobs go on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncGenerator
from typing import Any

import numpy as np

from ai_med_extract.config import ModelSettings, Settings
from ai_med_extract.errors import BadRequest
from ai_med_extract.inference.backends.base import SpeechBackend, TextBackend
from ai_med_extract.inference.backends.factory import available_backends, backend_class
from ai_med_extract.inference.bridge import ThreadBridge
from ai_med_extract.inference.catalogue import FALLBACK_MODEL, Catalogue, ModelType
from ai_med_extract.inference.errors import ContextOverflow, ModelNotFound
from ai_med_extract.inference.fallback import FallbackWalk, fallback_chain
from ai_med_extract.inference.profiles import Profile, build_profile
from ai_med_extract.inference.residency import MB, Residency, Slot
from ai_med_extract.inference.types import Fallback, GenerationRequest, GenerationResult, Transcript
from ai_med_extract.observability import metrics

logger = logging.getLogger(__name__)


class ModelPool:
    def __init__(
        self,
        catalogue: Catalogue,
        *,
        settings: ModelSettings | None = None,
        profile: Profile | None = None,
        speech_model: str | None = None,
    ):
        self.settings = settings or ModelSettings()
        self.catalogue = catalogue
        self.profile = profile or build_profile(self.settings)
        self.timeout_s = self.settings.generation_timeout_s
        self.bridge = ThreadBridge(max_workers=self.profile.max_models + 4, timeout_s=self.timeout_s)
        self.residency = Residency(catalogue, settings=self.settings, profile=self.profile, bridge=self.bridge)
        self._default_model = catalogue.default_text_model()
        self._speech_model = speech_model or catalogue.default_speech()

    # ----------------------------------------------------------------- construction

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelPool:
        """Read and validate the catalogue (no model is loaded here)."""
        catalogue = Catalogue.load(settings.models.config_path)
        speech = settings.extraction.speech_model
        known = {e.name for e in catalogue.speech_models}
        pool = cls(catalogue, settings=settings.models, speech_model=speech if speech in known else None)
        logger.info(
            "model pool ready",
            extra={
                "profile": pool.profile.name,
                "device": pool.profile.device,
                "max_models": pool.profile.max_models,
                "max_memory_mb": pool.profile.max_memory_mb,
                "default_model": pool.default_model,
                "models": len(catalogue.entries()),
            },
        )
        return pool

    # ----------------------------------------------------------------- the contract

    async def generate(self, req: GenerationRequest) -> GenerationResult:
        started = time.perf_counter()
        walk = FallbackWalk(fallback_chain(self.catalogue, req.model or self._default_model))
        deadline = time.monotonic() + (req.timeout_s or self.timeout_s)
        for attempt in walk:
            async with attempt, self.residency.use(attempt.name) as slot:
                backend = _text_backend(slot)
                async with self.residency.turn(slot, deadline):
                    prompt_tokens = await self._check_context(slot, backend, req)
                    cancel = threading.Event()
                    began = time.perf_counter()
                    completion = await self.bridge.call(
                        backend.generate, req, cancel, deadline=deadline, cancel=cancel, interrupt=backend
                    )
                    _observe(slot, time.perf_counter() - began, completion.completion_tokens, prompt_tokens)
                result = GenerationResult(
                    text=completion.text,
                    model=slot.name,
                    backend=slot.entry.type.value,
                    prompt_tokens=completion.prompt_tokens or prompt_tokens,
                    completion_tokens=completion.completion_tokens,
                    duration_s=time.perf_counter() - started,
                    fallbacks=tuple(walk.taken),
                    finish_reason=completion.finish_reason,
                )
                logger.info(
                    "generation finished",
                    extra={
                        "model": result.model,
                        "backend": result.backend,
                        "prompt_tokens": result.prompt_tokens,
                        "completion_tokens": result.completion_tokens,
                        "duration_s": round(result.duration_s, 3),
                        "fallbacks": len(walk.taken),
                    },
                )
                return result
        raise AssertionError("unreachable: the last model of a chain never gives way")

    async def stream(
        self, req: GenerationRequest, *, fallbacks: list[Fallback] | None = None
    ) -> AsyncGenerator[str, None]:
        """Token pieces as they are generated. Fallbacks taken are appended to ``fallbacks``.

        Closing the iterator early (a client going away) cancels the generation.
        """
        walk = FallbackWalk(fallback_chain(self.catalogue, req.model or self._default_model), taken=fallbacks)
        deadline = time.monotonic() + (req.timeout_s or self.timeout_s)
        for attempt in walk:
            async with attempt, self.residency.use(attempt.name) as slot:
                backend = _text_backend(slot)
                async with self.residency.turn(slot, deadline):
                    prompt_tokens = await self._check_context(slot, backend, req)
                    began = time.perf_counter()
                    async for piece in self.bridge.stream(backend, req, deadline):
                        attempt.produced = True  # from here on, no other model may take over
                        yield piece
                    _observe(slot, time.perf_counter() - began, backend.last.completion_tokens, prompt_tokens)

    async def transcribe(self, audio: np.ndarray, *, model: str | None = None) -> Transcript:
        if not isinstance(audio, np.ndarray) or audio.ndim != 1:
            raise BadRequest("audio must be a one-dimensional array of samples", code="AUDIO_INVALID")
        if audio.dtype != np.float32:
            audio = audio.astype(np.float32)
        requested = model or self._speech_model
        if requested is None:
            raise ModelNotFound("no speech model is configured in the model catalogue")
        walk = FallbackWalk(fallback_chain(self.catalogue, requested, text=False))
        deadline = time.monotonic() + self.timeout_s
        for attempt in walk:
            async with attempt, self.residency.use(attempt.name) as slot:
                backend = slot.backend
                if not isinstance(backend, SpeechBackend):
                    raise BadRequest(f"model {slot.name!r} is not a speech model", code="NOT_A_SPEECH_MODEL")
                async with self.residency.turn(slot, deadline):
                    cancel = threading.Event()
                    began = time.perf_counter()
                    transcript = await self.bridge.call(
                        backend.transcribe, audio, cancel, deadline=deadline, cancel=cancel
                    )
                    _observe(slot, time.perf_counter() - began, 0, 0)
                if not walk.taken:
                    return transcript
                return Transcript(
                    segments=transcript.segments,
                    language=transcript.language,
                    duration_s=transcript.duration_s,
                    model=transcript.model,
                    backend=transcript.backend,
                    fallbacks=tuple(walk.taken),
                )
        raise AssertionError("unreachable: the last model of a chain never gives way")

    async def count_tokens(self, text: str, model: str | None = None) -> int:
        """Tokens of ``text`` by the tokenizer of the model that would serve ``model``."""
        walk = FallbackWalk(fallback_chain(self.catalogue, model or self._default_model), record=False)
        for attempt in walk:
            async with attempt, self.residency.use(attempt.name) as slot:
                return await self.bridge.call(_text_backend(slot).count_tokens, text)
        raise AssertionError("unreachable: the last model of a chain never gives way")

    def context_window(self, model: str | None = None) -> int:
        name = model or self._default_model
        slot = self.residency.slots.get(name)
        if slot is not None and isinstance(slot.backend, TextBackend):
            return slot.backend.context_window()
        entry = self.catalogue.get(name)
        if entry.type is ModelType.fallback:
            from ai_med_extract.inference.backends.fallback import FALLBACK_CONTEXT_WINDOW

            return FALLBACK_CONTEXT_WINDOW
        return entry.n_ctx or self.profile.n_ctx

    async def close(self) -> None:
        if self.residency.closed:
            return
        # calls already in progress finish (or time out) before their model is unloaded under them
        await self.residency.close(self.timeout_s)
        self.bridge.shutdown()
        self.residency.remove_downloads()

    # ----------------------------------------------------------------- management

    @property
    def default_model(self) -> str:
        return self._default_model

    @property
    def speech_model(self) -> str | None:
        return self._speech_model

    def loaded(self) -> list[str]:
        """Loaded model names, least recently used first."""
        return list(self.residency.slots)

    async def load(self, name: str) -> dict[str, Any]:
        """Load ``name`` now (no fallback: errors say why it cannot be loaded)."""
        async with self.residency.use(name):
            pass
        return self.describe_model(name)

    async def unload(self, name: str) -> bool:
        return await self.residency.unload(name)

    async def switch(self, name: str) -> dict[str, Any]:
        """Make ``name`` the default text (or speech) model, loading it first."""
        entry = self.catalogue.get(name)
        info = await self.load(name)
        if entry.type.is_speech:
            self._speech_model = name
        else:
            self._default_model = name
        logger.info("default model switched", extra={"model": name, "speech": entry.type.is_speech})
        return info

    def describe_model(self, name: str) -> dict[str, Any]:
        entry = self.catalogue.get(name)
        slot = self.residency.slots.get(name)
        info: dict[str, Any] = {
            "name": entry.name,
            "type": entry.type.value,
            "is_active": entry.is_active,
            "description": entry.description,
            "use_case": entry.use_case,
            "repo_id": entry.repo_id,
            "filename": entry.filename,
            "fallback": entry.fallback,
            "loaded": slot is not None,
            "default": name in (self._default_model, self._speech_model),
        }
        try:
            info["backend_available"] = backend_class(entry.type).is_available()
        except ImportError:
            info["backend_available"] = False
        if slot is not None:
            info.update(
                memory_mb=round(slot.memory_bytes / MB, 1),
                load_s=round(slot.load_s, 3),
                source=slot.source,
                in_use=slot.in_use,
                waiting=slot.waiting,
                requests=slot.requests,
                **slot.backend.info(),
            )
            if isinstance(slot.backend, TextBackend):
                info["context_window"] = slot.backend.context_window()
        return info

    def info(self) -> dict[str, Any]:
        names = [e.name for e in self.catalogue.entries()]
        if FALLBACK_MODEL not in names:
            names.append(FALLBACK_MODEL)
        return {
            "default_model": self._default_model,
            "speech_model": self._speech_model,
            "profile": self.limits(),
            "models": [self.describe_model(n) for n in names],
            "runtime_behavior": self.catalogue.runtime_behavior.model_dump(),
        }

    def limits(self) -> dict[str, Any]:
        return {
            "name": self.profile.name,
            "device": self.profile.device,
            "max_models": self.profile.max_models,
            "max_memory_mb": self.profile.max_memory_mb,
            "n_ctx": self.profile.n_ctx,
            "n_gpu_layers": self.profile.n_gpu_layers,
            "torch_dtype": self.profile.torch_dtype,
        }

    def memory_used_bytes(self) -> int:
        return self.residency.memory_used_bytes()

    def health(self) -> dict[str, Any]:
        """Cheap readiness summary (nothing is loaded or imported)."""
        backends = available_backends()
        default_type = self.catalogue.get(self._default_model).type.value
        status = "closed" if self.residency.closed else ("ok" if backends.get(default_type) else "degraded")
        return {
            "ok": status == "ok",
            "status": status,
            "profile": self.profile.name,
            "device": self.profile.device,
            "default_model": self._default_model,
            "default_backend_available": bool(backends.get(default_type)),
            "loaded": [
                {
                    "name": s.name,
                    "type": s.entry.type.value,
                    "memory_mb": round(s.memory_bytes / MB, 1),
                    "in_use": s.in_use,
                }
                for s in self.residency.slots.values()
            ],
            "memory_used_mb": round(self.memory_used_bytes() / MB, 1),
            "max_memory_mb": self.profile.max_memory_mb,
            "max_models": self.profile.max_models,
            "backends": backends,
        }

    # ----------------------------------------------------------------- internals

    async def _check_context(self, slot: Slot, backend: TextBackend, req: GenerationRequest) -> int:
        prompt_tokens = await self.bridge.call(backend.prompt_tokens, req)
        window = backend.context_window()
        if prompt_tokens < 0:  # a remote model without a tokenizer: the server checks
            return 0
        if prompt_tokens + req.max_tokens > window:
            raise ContextOverflow(
                model=slot.name, prompt_tokens=prompt_tokens, max_tokens=req.max_tokens, context_window=window
            )
        return prompt_tokens


def _text_backend(slot: Slot) -> TextBackend:
    if not isinstance(slot.backend, TextBackend):
        raise BadRequest(f"model {slot.name!r} is not a text model", code="NOT_A_TEXT_MODEL")
    return slot.backend


def _observe(slot: Slot, seconds: float, tokens: int, prompt_tokens: int) -> None:
    metrics.MODEL_INFERENCE_TIME.labels(slot.name).observe(seconds)
    if tokens:
        metrics.MODEL_TOKENS.labels(slot.name).inc(tokens)
    if prompt_tokens:
        metrics.MODEL_PROMPT_TOKENS.labels(slot.name).inc(prompt_tokens)
