"""Residency: which models are loaded, and which one gives way when another needs room.

- A model loads on first use, from the catalogue, through its backend (in a worker thread); its
  memory is measured (process RSS, GPU allocation, or what the backend reports, the largest).
- At most ``max_models`` are loaded and at most ``max_memory_mb`` of measured memory is held; the
  least recently used idle model is evicted first. A model in use (generating, or with requests
  waiting for it) is never evicted; a load that needs its room waits for it to become idle.
- One request at a time uses a model (:meth:`Residency.turn`); a bounded number may wait for it,
  beyond that ``MODEL_BUSY`` (503).
- Backends named in ``isolated_backends`` (llama.cpp by default) are loaded in a child process
  (:mod:`.host`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from ai_med_extract.config import ModelSettings
from ai_med_extract.errors import AppError
from ai_med_extract.inference.backends.base import Backend, LoadContext, TextBackend
from ai_med_extract.inference.backends.factory import backend_class
from ai_med_extract.inference.bridge import ThreadBridge
from ai_med_extract.inference.catalogue import Catalogue, ModelEntry, ModelType
from ai_med_extract.inference.errors import (
    BackendUnavailable,
    ModelBusy,
    ModelLoadFailed,
    ModelTooLarge,
    describe,
)
from ai_med_extract.inference.profiles import Profile
from ai_med_extract.inference.sources import ResolvedSource, resolve
from ai_med_extract.observability import metrics

logger = logging.getLogger(__name__)

MB = 1024 * 1024
_WITHOUT_LOCAL_WEIGHTS = (ModelType.fallback, ModelType.openai)  # outside the count and memory limits


@dataclass(eq=False)
class Slot:
    """One loaded model and its use."""

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


class Residency:
    def __init__(
        self,
        catalogue: Catalogue,
        *,
        settings: ModelSettings,
        profile: Profile,
        bridge: ThreadBridge,
    ):
        self.catalogue = catalogue
        self.settings = settings
        self.profile = profile
        self.bridge = bridge
        self.slots: OrderedDict[str, Slot] = OrderedDict()  # least recently used first
        self.closed = False
        self._load_lock = asyncio.Lock()
        self._idle = asyncio.Condition()
        self._download_dir: Path | None = None
        self._process = psutil.Process()

    @property
    def limit_bytes(self) -> int:
        return self.profile.max_memory_mb * MB

    def memory_used_bytes(self) -> int:
        return sum(s.memory_bytes for s in self.slots.values() if s.counts_toward_limits)

    # ----------------------------------------------------------------- use

    @contextlib.asynccontextmanager
    async def use(self, name: str) -> AsyncIterator[Slot]:
        """The loaded model ``name``, loading it if needed; it cannot be evicted while in use."""
        slot = await self._acquire(name)
        try:
            yield slot
        finally:
            await self._release(slot)

    @contextlib.asynccontextmanager
    async def turn(self, slot: Slot, deadline: float) -> AsyncIterator[None]:
        """Exclusive use of a model; a bounded number of requests may wait for it."""
        if slot.lock.locked() and slot.waiting >= self.settings.max_waiting:
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

    async def _acquire(self, name: str) -> Slot:
        if self.closed:
            raise ModelLoadFailed("the model pool is shut down", code="POOL_CLOSED")
        slot = self.slots.get(name)
        if slot is None:
            async with self._load_lock:
                slot = self.slots.get(name)
                if slot is None:
                    slot = await self._load(self.catalogue.get(name))
        slot.in_use += 1
        slot.last_used = time.monotonic()
        self.slots.move_to_end(name)
        return slot

    async def _release(self, slot: Slot) -> None:
        slot.in_use -= 1
        if slot.in_use == 0:
            async with self._idle:
                self._idle.notify_all()

    # ----------------------------------------------------------------- unloading

    async def unload(self, name: str) -> bool:
        """Unload ``name`` on request; ``MODEL_BUSY`` while it is in use."""
        async with self._load_lock:
            slot = self.slots.get(name)
            if slot is None:
                return False
            if slot.in_use:
                raise ModelBusy(f"model {name!r} is in use", details={"model": name}, retry_after=5)
            await self._unload(slot, reason="request")
            return True

    async def close(self, timeout_s: float) -> None:
        """Refuse new use; let calls in progress finish (or time out), then unload every model."""
        self.closed = True
        deadline = time.monotonic() + timeout_s
        async with self._idle:
            while any(s.in_use for s in self.slots.values()) and (left := deadline - time.monotonic()) > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._idle.wait(), left)
        async with self._load_lock:
            for slot in list(self.slots.values()):
                await self._unload(slot, reason="shutdown")

    def remove_downloads(self) -> None:
        if self._download_dir is not None:
            shutil.rmtree(self._download_dir, ignore_errors=True)

    async def _unload(self, slot: Slot, *, reason: str) -> None:
        self.slots.pop(slot.name, None)
        began = time.perf_counter()
        await self.bridge.run(self.bridge.unload_when_idle, slot.backend)
        _release_gpu_memory()
        metrics.MODEL_MEMORY.labels(slot.name).set(0)
        if reason in ("count", "memory"):
            metrics.MODEL_EVICTIONS.labels(slot.name).inc()
        logger.info(
            "model unloaded",
            extra={"model": slot.name, "reason": reason, "unload_s": round(time.perf_counter() - began, 3)},
        )

    # ----------------------------------------------------------------- loading

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
            cache_dir=self.settings.cache_dir,
            download_dir=self._download_dir,
        )

    @staticmethod
    def _backend_class(entry: ModelEntry) -> type[Backend]:
        """The backend class for ``entry``, or why it cannot run here."""
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
        return cls

    def _backend(self, cls: type[Backend], entry: ModelEntry, source: ResolvedSource | None) -> Backend:
        """The (not yet loaded) backend for ``entry``: in a child process if its type is isolated."""
        ctx = LoadContext(
            entry=entry,
            source=source,
            profile=self.profile,
            cache_dir=self.settings.cache_dir,
            allow_downloads=self.catalogue.runtime_behavior.allow_runtime_downloads,
        )
        if entry.type.value in self.settings.isolated_backends and issubclass(cls, TextBackend):
            from ai_med_extract.inference.host import HostedBackend

            return HostedBackend(cls, ctx)
        return cls(ctx)

    async def _load(self, entry: ModelEntry) -> Slot:
        """Load under the load lock: make room, load in a thread, measure, enforce the limits."""
        cls = self._backend_class(entry)
        counts = entry.type not in _WITHOUT_LOCAL_WEIGHTS
        source = await self.bridge.run(self._resolve, entry)
        estimate = source.size_bytes() if source is not None else 0
        if counts and estimate > self.limit_bytes:
            raise ModelTooLarge(
                f"model {entry.name!r} needs about {estimate // MB} MB, more than the pool's "
                f"{self.profile.max_memory_mb} MB",
                details={"model": entry.name, "estimate_mb": estimate // MB},
            )
        if counts:
            await self._make_room(estimate)
        backend = self._backend(cls, entry, source)
        load_s, measured = await self._measured_load(entry, backend)
        if counts and measured > self.limit_bytes:
            await self.bridge.run(backend.unload)
            raise ModelTooLarge(
                f"model {entry.name!r} takes {measured // MB} MB, more than the pool's {self.profile.max_memory_mb} MB",
                details={"model": entry.name, "memory_mb": measured // MB},
            )
        slot = Slot(
            entry=entry,
            backend=backend,
            memory_bytes=measured if counts else 0,
            load_s=load_s,
            source=source.origin if source else "none",
        )
        self.slots[entry.name] = slot
        metrics.MODEL_LOAD_TIME.labels(entry.name).observe(load_s)
        metrics.MODEL_MEMORY.labels(entry.name).set(slot.memory_bytes)
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

    async def _measured_load(self, entry: ModelEntry, backend: Backend) -> tuple[float, int]:
        """Load ``backend`` in a thread; its load time and the memory it took."""
        rss_before = self._process.memory_info().rss
        gpu_before = _gpu_allocated()
        began = time.perf_counter()
        try:
            await self.bridge.run(backend.load)
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
        return load_s, measured

    # ----------------------------------------------------------------- eviction

    async def _make_room(self, estimate: int) -> None:
        """Evict idle models (LRU first) until one more model of ``estimate`` bytes fits; wait if all are busy."""
        deadline = time.monotonic() + self.settings.generation_timeout_s
        while True:
            counted = [s for s in self.slots.values() if s.counts_toward_limits]
            too_many = len(counted) >= self.profile.max_models
            too_big = self.memory_used_bytes() + estimate > self.limit_bytes
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

    async def _evict_over_memory(self, keep: Slot) -> None:
        while self.memory_used_bytes() > self.limit_bytes:
            victim = next(
                (s for s in self.slots.values() if s.counts_toward_limits and s.in_use == 0 and s is not keep),
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
