"""The interface every format extractor implements.

An extractor is an async generator over the units of a document (pages, frames, audio chunks): it
runs each unit's blocking work through the given ``run`` (the job's worker pool), appends the unit's
text to ``ExtractionOutput.assembler`` and yields a ``Step``. Between steps the agent reports progress
and honours cancellation, so a 300-page scan can be stopped after any page.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ai_med_extract.agents.text.result import DocumentKind, TextAssembler

Runner = Callable[..., Awaitable[Any]]
"""``await run(fn, *args)`` runs ``fn`` off the event loop (``JobContext.run_blocking``)."""


@dataclass(frozen=True, slots=True)
class Source:
    data: bytes
    media_type: str
    password: str | None = None


@dataclass(frozen=True, slots=True)
class Step:
    done: int
    total: int
    unit: str  # "page", "frame", "chunk", "part"
    detail: str = ""  # PHI-free, e.g. "ocr"


@dataclass
class ExtractionOutput:
    assembler: TextAssembler
    pages: int = 0
    ocr_pages: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    encoding: str | None = None
    duration_s: float | None = None
    language: str | None = None
    model: str | None = None


class Extractor(ABC):
    kind: ClassVar[DocumentKind]
    name: ClassVar[str]

    def is_available(self) -> bool:
        """False when a binary or library this extractor needs is missing."""
        return True

    def separator(self) -> str:
        """What goes between two segments in the full text."""
        return "\n\n"

    @abstractmethod
    def extract(self, source: Source, out: ExtractionOutput, run: Runner) -> AsyncIterator[Step]:
        """Append the document's segments to ``out`` unit by unit, yielding after each."""
