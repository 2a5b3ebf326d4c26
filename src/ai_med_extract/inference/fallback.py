"""The fallback walk: which models may serve a request, in order, and when one gives way to the next.

A text request may be served by the model asked for, then its configured ``fallback``, then the
runtime ``fallback_model``, then the text-based fallback; a speech request by the model and its
configured fallback. A model gives way when it cannot be loaded (``ModelLoadFailed`` and its kinds)
or fails (``GenerationFailed``), unless it is the last one or has already produced output (a stream
cannot take back what it sent). Every step is recorded, counted and logged.

Each attempt is an async context manager that swallows an error that lets the walk go on::

    for attempt in walk:
        async with attempt:
            ...
            return result
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from types import TracebackType

from ai_med_extract.errors import AppError
from ai_med_extract.inference.catalogue import FALLBACK_MODEL, Catalogue
from ai_med_extract.inference.errors import GenerationFailed, ModelLoadFailed, describe
from ai_med_extract.inference.types import Fallback
from ai_med_extract.observability import metrics

logger = logging.getLogger(__name__)

GIVES_WAY = (ModelLoadFailed, GenerationFailed)


def fallback_chain(catalogue: Catalogue, requested: str, *, text: bool = True) -> list[str]:
    """The models that may serve ``requested``, in order (``MODEL_NOT_FOUND`` for an unknown name)."""
    entry = catalogue.get(requested)
    chain = [requested]
    if entry.fallback:
        chain.append(entry.fallback)
    runtime = catalogue.runtime_behavior
    if text and runtime.fallback_model:
        chain.append(runtime.fallback_model)
    if text and runtime.text_fallback:
        chain.append(FALLBACK_MODEL)
    return list(dict.fromkeys(chain))


class FallbackWalk:
    """The attempts of one request along its chain; ``taken`` lists the fallbacks made so far."""

    def __init__(self, chain: list[str], *, taken: list[Fallback] | None = None, record: bool = True):
        self.chain = chain
        self.taken: list[Fallback] = taken if taken is not None else []
        self._reported = record

    def __iter__(self) -> Iterator[Attempt]:
        for position, name in enumerate(self.chain):
            following = self.chain[position + 1] if position + 1 < len(self.chain) else None
            attempt = Attempt(self, name, following)
            yield attempt
            if not attempt.gave_way:
                return

    def record(self, failed: str, following: str, exc: BaseException) -> None:
        if not self._reported:
            return
        reason = exc.code if isinstance(exc, AppError) else type(exc).__name__
        self.taken.append(Fallback(requested=failed, used=following, reason=reason))
        metrics.MODEL_FALLBACKS.labels(failed, following).inc()
        logger.warning("model fallback", extra={"requested": failed, "used": following, **describe(exc)})


class Attempt:
    """Serving a request with one model of the chain."""

    def __init__(self, walk: FallbackWalk, name: str, following: str | None):
        self.name = name
        self.produced = False  # set by a stream once it has handed out output
        self.gave_way = False
        self._walk = walk
        self._following = following

    async def __aenter__(self) -> Attempt:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        if exc is None or not isinstance(exc, GIVES_WAY) or self._following is None or self.produced:
            return False
        self.gave_way = True
        self._walk.record(self.name, self._following, exc)
        return True
