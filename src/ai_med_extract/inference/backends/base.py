"""The backend interface: one loaded model of one kind.

Backends are synchronous and single-threaded by contract: the pool calls them from a worker thread,
never from the event loop, and never twice at once on the same instance. Generation checks the
``cancel`` event between tokens so that timeouts and client disconnects stop work promptly.
"""

from __future__ import annotations

import importlib.util
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from ai_med_extract.inference.catalogue import ModelEntry, ModelType
from ai_med_extract.inference.profiles import Profile
from ai_med_extract.inference.sources import ResolvedSource
from ai_med_extract.inference.types import GenerationRequest, Transcript


class GenerationCancelled(Exception):
    """Raised inside a backend when its ``cancel`` event is set."""


@dataclass(slots=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str = "stop"


@dataclass(frozen=True, slots=True)
class LoadContext:
    """What a backend needs besides its catalogue entry."""

    entry: ModelEntry
    source: ResolvedSource | None  # None for backends without weights (fallback, openai)
    profile: Profile
    cache_dir: Path
    allow_downloads: bool = False


class Backend(ABC):
    kind: ClassVar[ModelType]
    requires: ClassVar[tuple[str, ...]] = ()  # importable modules the backend needs

    def __init__(self, ctx: LoadContext):
        self.ctx = ctx
        self.entry = ctx.entry
        self.device = "cpu"
        self.last = Completion("", 0, 0)

    @classmethod
    def is_available(cls) -> bool:
        return all(importlib.util.find_spec(module) is not None for module in cls.requires)

    @abstractmethod
    def load(self) -> None: ...

    @abstractmethod
    def unload(self) -> None: ...

    def interrupt(self) -> None:
        """Called from another thread after a request's cancel flag is set: stop work that does not
        look at the flag (a long prompt evaluation, say) as soon as the library allows."""
        return None

    def memory_bytes(self) -> int | None:
        """Memory the backend can account for itself (tensor sizes); None: use the RSS measurement."""
        return None

    def info(self) -> dict[str, object]:
        return {"device": self.device}


class TextBackend(Backend):
    supports_json_schema: ClassVar[bool] = False

    @abstractmethod
    def count_tokens(self, text: str) -> int: ...

    @abstractmethod
    def prompt_tokens(self, req: GenerationRequest) -> int:
        """Tokens of the prompt exactly as it will be fed (chat template applied)."""

    @abstractmethod
    def context_window(self) -> int: ...

    @abstractmethod
    def stream(self, req: GenerationRequest, cancel: threading.Event) -> Iterator[str]:
        """Token pieces; afterwards ``self.last`` holds the completion's counts."""

    def generate(self, req: GenerationRequest, cancel: threading.Event) -> Completion:
        pieces = list(self.stream(req, cancel))
        last = self.last
        return Completion("".join(pieces), last.prompt_tokens, last.completion_tokens, last.finish_reason)


class SpeechBackend(Backend):
    @abstractmethod
    def transcribe(self, audio: np.ndarray, cancel: threading.Event) -> Transcript: ...
