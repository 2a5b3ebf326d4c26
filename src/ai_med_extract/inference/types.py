"""Plain data exchanged between the agents and the model pool.

These types are the contract between ``agents`` and ``inference``: agents build a request, the pool
answers with a result, and neither side knows the other's internals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """One generation. Give ``messages`` (chat models) or ``prompt`` (raw completion)."""

    messages: tuple[ChatMessage, ...] = ()
    prompt: str | None = None
    model: str | None = None  # a name from models_config.json; None: the default model
    max_tokens: int = 512
    temperature: float = 0.3
    top_p: float = 0.9
    stop: tuple[str, ...] = ()
    json_schema: dict[str, Any] | None = None  # constrain output at generation time
    grammar: str | None = None  # GBNF grammar (gguf); alternative to json_schema
    timeout_s: float | None = None  # None: the pool's default (settings.models.generation_timeout_s)
    seed: int | None = 0


@dataclass(frozen=True, slots=True)
class Fallback:
    """A model that was asked for and not used, and why (reported in responses, logged)."""

    requested: str
    used: str
    reason: str


@dataclass(frozen=True, slots=True)
class GenerationResult:
    text: str
    model: str
    backend: str
    prompt_tokens: int
    completion_tokens: int
    duration_s: float
    fallbacks: tuple[Fallback, ...] = ()
    finish_reason: str = "stop"


@dataclass(frozen=True, slots=True)
class TranscriptSegment:
    start_s: float
    end_s: float
    text: str
    confidence: float | None = None


@dataclass(frozen=True, slots=True)
class Transcript:
    segments: tuple[TranscriptSegment, ...]
    language: str
    duration_s: float
    model: str
    backend: str
    fallbacks: tuple[Fallback, ...] = field(default=())
