"""The model pool: owns every loaded model; agents and routes only ask it.

- Models load on first use (or explicitly), from the catalogue, through their backend.
- At most ``max_models`` are loaded and at most ``max_memory_mb`` of measured memory is held; the least
  recently used idle model is evicted first. A model in use (generating, or with requests waiting for
  it) is never evicted; a load that needs its room waits for it to become idle.
- Generation runs in worker threads, one at a time per model, with a deadline; a bounded number of
  requests may wait for a busy model, beyond that ``MODEL_BUSY`` (503). Timeouts and client
  disconnects set a cancel flag the backend checks between tokens.
- Prompts are measured with the model's own tokenizer before generation (``CONTEXT_OVERFLOW``).
- Backends named in ``isolated_backends`` (llama.cpp by default) run in a child process
  (:mod:`.host`): a native crash there fails that call with ``INFERENCE_CRASHED`` and the next call
  starts a new child; the service and its other jobs go on.
- A model that cannot be loaded or fails gives way to its configured fallback, then to the
  runtime fallback model, then to the text-based fallback; every step is reported and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import psutil

from ai_med_extract.config import ModelSettings, Settings
from ai_med_extract.errors import AppError, BadRequest
from ai_med_extract.inference.backends.base import (
    Backend,
    GenerationCancelled,
    LoadContext,
    SpeechBackend,
    TextBackend,
)
from ai_med_extract.inference.backends.factory import available_backends, backend_class
from ai_med_extract.inference.catalogue import FALLBACK_MODEL, Catalogue, ModelEntry, ModelType
from ai_med_extract.inference.errors import (
    BackendUnavailable,
    ContextOverflow,
    GenerationFailed,
    GenerationTimeout,
    ModelBusy,
    ModelLoadFailed,
    ModelNotFound,
    ModelTooLarge,
    describe,
)
from ai_med_extract.inference.metrics import PoolMetrics, pool_metrics
from ai_med_extract.inference.profiles import Profile, build_profile
from ai_med_extract.inference.sources import ResolvedSource, resolve
from ai_med_extract.inference.types import Fallback, GenerationRequest, GenerationResult, Transcript

logger = logging.getLogger(__name__)

T = TypeVar("T")
MB = 1024 * 1024
_DONE = object()
STREAM_AHEAD = 32  # token pieces a stream may produce before its reader has taken them
_WITHOUT_LOCAL_WEIGHTS = (ModelType.fallback, ModelType.openai)  # outside the count and memory limits


@dataclass(eq=False)
class _Slot:
    entry: ModelEntry
    backend: Backend
    memory_bytes: int
    load_s: float
    source: str
    last_used: float = field(default_factory=time.monotonic)
    in_use: int = 0
    waiting: int = 0
    requests: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def counts_toward_limits(self) -> bool:
        return self.entry.type not in _WITHOUT_LOCAL_WEIGHTS


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
        self.cache_dir = self.settings.cache_dir
        self.timeout_s = self.settings.generation_timeout_s
        self.max_waiting = self.settings.max_waiting
        self.metrics: PoolMetrics = pool_metrics()
        self._default_model = catalogue.default_text_model()
        self._speech_model = speech_model or catalogue.default_speech()
        self._slots: OrderedDict[str, _Slot] = OrderedDict()  # least recently used first
        self._load_lock = asyncio.Lock()
        self._idle = asyncio.Condition()
        self._executor = ThreadPoolExecutor(
            max_workers=self.profile.max_models + 4, thread_name_prefix="model-pool"
        )
        self._download_dir: Path | None = None
        self._closed = False
        self._process = psutil.Process()
        # Threads currently inside each backend's code (by id): a backend is never unloaded while
        # one of them runs, even one whose caller has gone away (timeout, abandoned stream).
        self._inside: Counter[int] = Counter()
        self._inside_changed = threading.Condition()

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
        fallbacks: list[Fallback] = []
        chain = self._chain(req.model or self._default_model)
        deadline = time.monotonic() + (req.timeout_s or self.timeout_s)
        for position, name in enumerate(chain):
            last = position == len(chain) - 1
            try:
                slot = await self._acquire(name)
            except ModelLoadFailed as exc:
                if last:
                    raise
                self._record_fallback(fallbacks, name, chain[position + 1], exc)
                continue
            try:
                backend = self._text_backend(slot)
                async with self._turn(slot, deadline):
                    prompt_tokens = await self._check_context(slot, backend, req)
                    cancel = threading.Event()
                    began = time.perf_counter()
                    completion = await self._blocking(
                        backend.generate, req, cancel, deadline=deadline, cancel=cancel, interrupt=backend
                    )
                    took = time.perf_counter() - began
            except (GenerationFailed, BackendUnavailable) as exc:
                if last:
                    raise
                self._record_fallback(fallbacks, name, chain[position + 1], exc)
                continue
            finally:
                await self._release(slot)
            self._observe(slot, took, completion.completion_tokens, prompt_tokens)
            result = GenerationResult(
                text=completion.text,
                model=name,
                backend=slot.entry.type.value,
                prompt_tokens=completion.prompt_tokens or prompt_tokens,
                completion_tokens=completion.completion_tokens,
                duration_s=time.perf_counter() - started,
                fallbacks=tuple(fallbacks),
                finish_reason=completion.finish_reason,
            )
            logger.info(
                "generation finished",
                extra={
                    "model": name,
                    "backend": result.backend,
                    "prompt_tokens": result.prompt_tokens,
                    "completion_tokens": result.completion_tokens,
                    "duration_s": round(result.duration_s, 3),
                    "fallbacks": len(fallbacks),
                },
            )
            return result
        raise AssertionError("unreachable: the chain is never empty")

    async def stream(
        self, req: GenerationRequest, *, fallbacks: list[Fallback] | None = None
    ) -> AsyncGenerator[str, None]:
        """Token pieces as they are generated. Fallbacks taken are appended to ``fallbacks``.

        Closing the iterator early (a client going away) cancels the generation.
        """
        taken = fallbacks if fallbacks is not None else []
        chain = self._chain(req.model or self._default_model)
        deadline = time.monotonic() + (req.timeout_s or self.timeout_s)
        for position, name in enumerate(chain):
            last = position == len(chain) - 1
            try:
                slot = await self._acquire(name)
            except ModelLoadFailed as exc:
                if last:
                    raise
                self._record_fallback(taken, name, chain[position + 1], exc)
                continue
            produced = False
            try:
                backend = self._text_backend(slot)
                async with self._turn(slot, deadline):
                    prompt_tokens = await self._check_context(slot, backend, req)
                    began = time.perf_counter()
                    async for piece in self._pump(backend, req, deadline):
                        produced = True
                        yield piece
                    took = time.perf_counter() - began
                    self._observe(slot, took, backend.last.completion_tokens, prompt_tokens)
                return
            except (GenerationFailed, BackendUnavailable) as exc:
                if last or produced:
                    raise
                self._record_fallback(taken, name, chain[position + 1], exc)
            finally:
                await self._release(slot)

    async def transcribe(self, audio: np.ndarray, *, model: str | None = None) -> Transcript:
        if not isinstance(audio, np.ndarray) or audio.ndim != 1:
            raise BadRequest("audio must be a one-dimensional array of samples", code="AUDIO_INVALID")
        if audio.dtype != np.float32:
            audio = audio.astype(np.float32)
        requested = model or self._speech_model
        if requested is None:
            raise ModelNotFound("no speech model is configured in the model catalogue")
        fallbacks: list[Fallback] = []
        chain = self._chain(requested, text=False)
        deadline = time.monotonic() + self.timeout_s
        for position, name in enumerate(chain):
            last = position == len(chain) - 1
            try:
                slot = await self._acquire(name)
            except ModelLoadFailed as exc:
                if last:
                    raise
                self._record_fallback(fallbacks, name, chain[position + 1], exc)
                continue
            try:
                backend = slot.backend
                if not isinstance(backend, SpeechBackend):
                    raise BadRequest(f"model {name!r} is not a speech model", code="NOT_A_SPEECH_MODEL")
                async with self._turn(slot, deadline):
                    cancel = threading.Event()
                    began = time.perf_counter()
                    transcript = await self._blocking(
                        backend.transcribe, audio, cancel, deadline=deadline, cancel=cancel
                    )
                    self._observe(slot, time.perf_counter() - began, 0, 0)
            except GenerationFailed as exc:
                if last:
                    raise
                self._record_fallback(fallbacks, name, chain[position + 1], exc)
                continue
            finally:
                await self._release(slot)
            if fallbacks:
                transcript = Transcript(
                    segments=transcript.segments,
                    language=transcript.language,
                    duration_s=transcript.duration_s,
                    model=transcript.model,
                    backend=transcript.backend,
                    fallbacks=tuple(fallbacks),
                )
            return transcript
        raise AssertionError("unreachable: the chain is never empty")

    async def count_tokens(self, text: str, model: str | None = None) -> int:
        """Tokens of ``text`` by the tokenizer of the model that would serve ``model``."""
        chain = self._chain(model or self._default_model)
        for position, name in enumerate(chain):
            try:
                slot = await self._acquire(name)
            except ModelLoadFailed:
                if position == len(chain) - 1:
                    raise
                continue
            try:
                backend = self._text_backend(slot)
                return await self._blocking(backend.count_tokens, text)
            finally:
                await self._release(slot)
        raise AssertionError("unreachable: the chain is never empty")

    def context_window(self, model: str | None = None) -> int:
        name = model or self._default_model
        slot = self._slots.get(name)
        if slot is not None and isinstance(slot.backend, TextBackend):
            return slot.backend.context_window()
        entry = self.catalogue.get(name)
        if entry.type is ModelType.fallback:
            from ai_med_extract.inference.backends.fallback import FALLBACK_CONTEXT_WINDOW

            return FALLBACK_CONTEXT_WINDOW
        return entry.n_ctx or self.profile.n_ctx

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # calls already past _acquire finish (or time out) before their model is unloaded under them
        deadline = time.monotonic() + self.timeout_s
        async with self._idle:
            while any(s.in_use for s in self._slots.values()) and (left := deadline - time.monotonic()) > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._idle.wait(), left)
        async with self._load_lock:
            for slot in list(self._slots.values()):
                await self._unload(slot, reason="shutdown")
        self._executor.shutdown(wait=True, cancel_futures=True)
        if self._download_dir is not None:
            shutil.rmtree(self._download_dir, ignore_errors=True)

    # ----------------------------------------------------------------- management

    @property
    def default_model(self) -> str:
        return self._default_model

    @property
    def speech_model(self) -> str | None:
        return self._speech_model

    def loaded(self) -> list[str]:
        """Loaded model names, least recently used first."""
        return list(self._slots)

    async def load(self, name: str) -> dict[str, Any]:
        """Load ``name`` now (no fallback: errors say why it cannot be loaded)."""
        slot = await self._acquire(name)
        await self._release(slot)
        return self.describe_model(name)

    async def unload(self, name: str) -> bool:
        async with self._load_lock:
            slot = self._slots.get(name)
            if slot is None:
                return False
            if slot.in_use:
                raise ModelBusy(f"model {name!r} is in use", details={"model": name}, retry_after=5)
            await self._unload(slot, reason="request")
            return True

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
        slot = self._slots.get(name)
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
        return sum(s.memory_bytes for s in self._slots.values() if s.counts_toward_limits)

    def health(self) -> dict[str, Any]:
        """Cheap readiness summary (nothing is loaded or imported)."""
        backends = available_backends()
        default_type = self.catalogue.get(self._default_model).type.value
        status = "closed" if self._closed else ("ok" if backends.get(default_type) else "degraded")
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
                for s in self._slots.values()
            ],
            "memory_used_mb": round(self.memory_used_bytes() / MB, 1),
            "max_memory_mb": self.profile.max_memory_mb,
            "max_models": self.profile.max_models,
            "backends": backends,
        }

    # ----------------------------------------------------------------- internals

    def _chain(self, requested: str, *, text: bool = True) -> list[str]:
        entry = self.catalogue.get(requested)  # MODEL_NOT_FOUND for unknown names: no fallback
        chain = [requested]
        if entry.fallback:
            chain.append(entry.fallback)
        runtime = self.catalogue.runtime_behavior
        if text and runtime.fallback_model:
            chain.append(runtime.fallback_model)
        if text and runtime.text_fallback:
            chain.append(FALLBACK_MODEL)
        unique: list[str] = []
        for name in chain:
            if name not in unique:
                unique.append(name)
        return unique

    def _record_fallback(
        self, fallbacks: list[Fallback], failed: str, next_name: str, exc: BaseException
    ) -> None:
        reason = exc.code if isinstance(exc, AppError) else type(exc).__name__
        fallbacks.append(Fallback(requested=failed, used=next_name, reason=reason))
        self.metrics.fallbacks.labels(failed, next_name).inc()
        logger.warning("model fallback", extra={"requested": failed, "used": next_name, **describe(exc)})

    def _text_backend(self, slot: _Slot) -> TextBackend:
        if not isinstance(slot.backend, TextBackend):
            raise BadRequest(f"model {slot.name!r} is not a text model", code="NOT_A_TEXT_MODEL")
        return slot.backend

    async def _check_context(self, slot: _Slot, backend: TextBackend, req: GenerationRequest) -> int:
        prompt_tokens = await self._blocking(backend.prompt_tokens, req)
        window = backend.context_window()
        if prompt_tokens < 0:  # a remote model without a tokenizer: the server checks
            return 0
        if prompt_tokens + req.max_tokens > window:
            raise ContextOverflow(
                model=slot.name, prompt_tokens=prompt_tokens, max_tokens=req.max_tokens, context_window=window
            )
        return prompt_tokens

    def _observe(self, slot: _Slot, seconds: float, tokens: int, prompt_tokens: int) -> None:
        self.metrics.inference_time.labels(slot.name).observe(seconds)
        if tokens:
            self.metrics.tokens.labels(slot.name).inc(tokens)
        if prompt_tokens:
            self.metrics.prompt_tokens.labels(slot.name).inc(prompt_tokens)

    async def _blocking(
        self,
        fn: Callable[..., T],
        *args: Any,
        deadline: float | None = None,
        cancel: threading.Event | None = None,
        interrupt: Backend | None = None,
    ) -> T:
        """Run ``fn`` in a worker thread; on timeout or cancellation, flag it and wait for it to stop."""
        loop = asyncio.get_running_loop()
        owner = getattr(fn, "__self__", None)
        future: asyncio.Future[T] = loop.run_in_executor(
            self._executor, self._inside_backend(owner, fn) if owner is not None else fn, *args
        )
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            if cancel is not None:
                cancel.set()
                self._interrupt(interrupt)
            await self._drain(future)
            raise GenerationTimeout(
                "generation did not finish within its time limit", details={"timeout_s": self.timeout_s}
            ) from None
        except asyncio.CancelledError:
            if cancel is not None:
                cancel.set()
                self._interrupt(interrupt)
            await self._drain(future)
            raise
        except GenerationCancelled:
            raise GenerationTimeout("generation was cancelled") from None
        except AppError:
            raise
        except Exception as exc:
            logger.error("backend failure", extra=describe(exc))
            raise GenerationFailed(f"the model failed ({type(exc).__name__})") from exc

    @staticmethod
    def _interrupt(backend: Backend | None) -> None:
        if backend is None:
            return
        try:
            backend.interrupt()
        except Exception as exc:  # best effort: the cancel flag still stops it between tokens
            logger.warning("interrupt failed", extra=describe(exc))

    @staticmethod
    async def _drain(future: Awaitable[Any]) -> None:
        with contextlib.suppress(BaseException):
            await asyncio.shield(future)

    async def _pump(
        self, backend: TextBackend, req: GenerationRequest, deadline: float
    ) -> AsyncIterator[str]:
        """Run the backend's token iterator in a thread and hand its pieces to the event loop."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancel = threading.Event()
        room = threading.Semaphore(STREAM_AHEAD)  # a slow reader holds the generation back

        def work() -> None:
            try:
                for piece in backend.stream(req, cancel):
                    while not room.acquire(timeout=0.05) and not cancel.is_set():
                        pass
                    if cancel.is_set():
                        break
                    loop.call_soon_threadsafe(queue.put_nowait, piece)
                loop.call_soon_threadsafe(queue.put_nowait, _DONE)
            except BaseException as exc:  # handed to the consumer
                loop.call_soon_threadsafe(queue.put_nowait, exc)

        future = loop.run_in_executor(self._executor, self._inside_backend(backend, work))
        try:
            while True:
                timeout = max(0.0, deadline - time.monotonic())
                try:
                    item = await asyncio.wait_for(queue.get(), timeout)
                except TimeoutError:
                    raise GenerationTimeout(
                        "generation did not finish within its time limit",
                        details={"timeout_s": self.timeout_s},
                    ) from None
                if item is _DONE:
                    return
                if isinstance(item, GenerationCancelled):
                    raise GenerationTimeout("generation was cancelled")
                if isinstance(item, AppError):
                    raise item
                if isinstance(item, BaseException):
                    logger.error("backend failure", extra=describe(item))
                    raise GenerationFailed(f"the model failed ({type(item).__name__})") from item
                room.release()
                yield item
        finally:
            if not future.done():
                cancel.set()
                self._interrupt(backend)
            await self._drain(future)

    @contextlib.asynccontextmanager
    async def _turn(self, slot: _Slot, deadline: float) -> AsyncIterator[None]:
        """Exclusive use of a model; a bounded number of requests may wait for it."""
        if slot.lock.locked() and slot.waiting >= self.max_waiting:
            raise ModelBusy(
                f"model {slot.name!r} is busy and {slot.waiting} requests are already waiting",
                details={"model": slot.name, "waiting": slot.waiting},
                retry_after=5,
            )
        slot.waiting += 1
        try:
            async with asyncio.timeout_at(
                asyncio.get_running_loop().time() + max(0.0, deadline - time.monotonic())
            ):
                await slot.lock.acquire()
        except TimeoutError:
            raise ModelBusy(
                f"model {slot.name!r} stayed busy for the whole time limit",
                details={"model": slot.name},
                retry_after=5,
            ) from None
        finally:
            slot.waiting -= 1
        try:
            slot.requests += 1
            yield
        finally:
            slot.lock.release()

    async def _acquire(self, name: str) -> _Slot:
        """The loaded model ``name``, loading it if needed; marked in use until ``_release``."""
        if self._closed:
            raise ModelLoadFailed("the model pool is shut down", code="POOL_CLOSED")
        slot = self._slots.get(name)
        if slot is None:
            async with self._load_lock:
                slot = self._slots.get(name)
                if slot is None:
                    slot = await self._load(self.catalogue.get(name))
        slot.in_use += 1
        slot.last_used = time.monotonic()
        self._slots.move_to_end(name)
        return slot

    async def _release(self, slot: _Slot) -> None:
        slot.in_use -= 1
        if slot.in_use == 0:
            async with self._idle:
                self._idle.notify_all()

    def _resolve(self, entry: ModelEntry) -> ResolvedSource | None:
        if entry.type in (ModelType.fallback, ModelType.openai):
            return None
        if entry.type is ModelType.openai_whisper and entry.checkpoint and not (entry.path or entry.package):
            return None  # openai-whisper finds or fetches its own checkpoint
        if not self.catalogue.runtime_behavior.cache_runtime_downloads and self._download_dir is None:
            self._download_dir = Path(tempfile.mkdtemp(prefix="ame-models-"))
        return resolve(
            entry,
            self.catalogue.runtime_behavior,
            base_dir=self.catalogue.base_dir,
            cache_dir=self.cache_dir,
            download_dir=self._download_dir,
        )

    async def _load(self, entry: ModelEntry) -> _Slot:
        """Load under the load lock: make room, load in a thread, measure, enforce the limits."""
        try:
            cls = backend_class(entry.type)
        except ImportError as exc:
            raise BackendUnavailable(
                f"model {entry.name!r}: the {entry.type.value} backend cannot be imported",
                details={"model": entry.name},
            ) from exc
        if not cls.is_available():
            raise BackendUnavailable(
                f"model {entry.name!r}: the {entry.type.value} backend needs {', '.join(cls.requires)}, "
                "which is not installed",
                details={"model": entry.name, "backend": entry.type.value},
            )
        loop = asyncio.get_running_loop()
        source = await loop.run_in_executor(self._executor, self._resolve, entry)
        estimate = source.size_bytes() if source is not None else 0
        limit = self.profile.max_memory_mb * MB
        counts = entry.type not in _WITHOUT_LOCAL_WEIGHTS
        if counts and estimate > limit:
            raise ModelTooLarge(
                f"model {entry.name!r} needs about {estimate // MB} MB, more than the pool's "
                f"{self.profile.max_memory_mb} MB",
                details={"model": entry.name, "estimate_mb": estimate // MB},
            )
        if counts:
            await self._make_room(estimate)
        ctx = LoadContext(
            entry=entry,
            source=source,
            profile=self.profile,
            cache_dir=self.cache_dir,
            allow_downloads=self.catalogue.runtime_behavior.allow_runtime_downloads,
        )
        backend: Backend
        if entry.type.value in self.settings.isolated_backends and issubclass(cls, TextBackend):
            from ai_med_extract.inference.host import HostedBackend

            backend = HostedBackend(cls, ctx)
        else:
            backend = cls(ctx)
        rss_before = self._process.memory_info().rss
        gpu_before = _gpu_allocated()
        began = time.perf_counter()
        try:
            await loop.run_in_executor(self._executor, backend.load)
        except AppError:
            raise
        except Exception as exc:
            logger.error("model load failed", extra={"model": entry.name, **describe(exc)})
            raise ModelLoadFailed(
                f"model {entry.name!r} could not be loaded ({type(exc).__name__})",
                details={"model": entry.name, "backend": entry.type.value},
            ) from exc
        load_s = time.perf_counter() - began
        measured = max(
            self._process.memory_info().rss - rss_before,
            _gpu_allocated() - gpu_before,
            backend.memory_bytes() or 0,
            0,
        )
        if counts and measured > limit:
            await loop.run_in_executor(self._executor, backend.unload)
            raise ModelTooLarge(
                f"model {entry.name!r} takes {measured // MB} MB, more than the pool's {self.profile.max_memory_mb} MB",
                details={"model": entry.name, "memory_mb": measured // MB},
            )
        slot = _Slot(
            entry=entry,
            backend=backend,
            memory_bytes=measured if counts else 0,
            load_s=load_s,
            source=source.origin if source else "none",
        )
        self._slots[entry.name] = slot
        self.metrics.load_time.labels(entry.name).observe(load_s)
        self.metrics.memory.labels(entry.name).set(slot.memory_bytes)
        logger.info(
            "model loaded",
            extra={
                "model": entry.name,
                "backend": entry.type.value,
                "device": backend.device,
                "load_s": round(load_s, 3),
                "memory_mb": round(slot.memory_bytes / MB, 1),
                "source": slot.source,
            },
        )
        if counts:
            await self._evict_over_memory(keep=slot)
        return slot

    async def _make_room(self, estimate: int) -> None:
        """Evict idle models (LRU first) until one more model of ``estimate`` bytes fits; wait if all are busy."""
        limit = self.profile.max_memory_mb * MB
        deadline = time.monotonic() + self.timeout_s
        while True:
            counted = [s for s in self._slots.values() if s.counts_toward_limits]
            too_many = len(counted) >= self.profile.max_models
            too_big = self.memory_used_bytes() + estimate > limit
            if not (too_many or too_big):
                return
            victim = next((s for s in counted if s.in_use == 0), None)
            if victim is not None:
                await self._unload(victim, reason="count" if too_many else "memory")
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ModelBusy(
                    "every loaded model is busy; no room to load another",
                    retry_after=5,
                    details={"loaded": len(counted)},
                )
            async with self._idle:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._idle.wait(), remaining)

    async def _evict_over_memory(self, keep: _Slot) -> None:
        limit = self.profile.max_memory_mb * MB
        while self.memory_used_bytes() > limit:
            victim = next(
                (
                    s
                    for s in self._slots.values()
                    if s.counts_toward_limits and s.in_use == 0 and s is not keep
                ),
                None,
            )
            if victim is None:
                logger.warning(
                    "memory above the limit while models are busy",
                    extra={
                        "memory_mb": self.memory_used_bytes() // MB,
                        "max_memory_mb": self.profile.max_memory_mb,
                    },
                )
                return
            await self._unload(victim, reason="memory")

    def _inside_backend(self, backend: Any, fn: Callable[..., T]) -> Callable[..., T]:
        key = id(backend)

        def run(*args: Any) -> T:
            with self._inside_changed:
                self._inside[key] += 1
            try:
                return fn(*args)
            finally:
                with self._inside_changed:
                    self._inside[key] -= 1
                    self._inside_changed.notify_all()

        return run

    def _unload_when_idle(self, backend: Backend, wait_s: float = 120.0) -> None:
        """Unload once no thread is inside the backend (interrupting any that still is)."""
        key = id(backend)
        with self._inside_changed:
            if self._inside[key]:
                self._interrupt(backend)
            if not self._inside_changed.wait_for(lambda: self._inside[key] <= 0, timeout=wait_s):
                logger.error("model still busy after interrupt; unloading anyway")
            self._inside.pop(key, None)
        backend.unload()

    async def _unload(self, slot: _Slot, *, reason: str) -> None:
        self._slots.pop(slot.name, None)
        began = time.perf_counter()
        await asyncio.get_running_loop().run_in_executor(self._executor, self._unload_when_idle, slot.backend)
        _release_gpu_memory()
        self.metrics.memory.labels(slot.name).set(0)
        if reason in ("count", "memory"):
            self.metrics.evictions.labels(slot.name).inc()
        logger.info(
            "model unloaded",
            extra={"model": slot.name, "reason": reason, "unload_s": round(time.perf_counter() - began, 3)},
        )


def _gpu_allocated() -> int:
    import sys

    torch = sys.modules.get("torch")  # only if a backend already imported it
    if torch is not None and torch.cuda.is_available():
        return int(torch.cuda.memory_allocated())
    return 0


def _release_gpu_memory() -> None:
    import gc
    import sys

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
