"""The result cache: finished summaries keyed by the record, the model and the options (an LRU)."""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from typing import Any

from .output import PatientSummary


def cache_key(payload: Any, model: str | None, options: dict[str, Any]) -> str:
    """SHA-256 over the canonical JSON of the input, the model name and the options that change output."""
    blob = json.dumps({"input": payload, "model": model, "options": options}, sort_keys=True, default=str,
                      separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


class SummaryCache:
    """In-memory LRU of :class:`PatientSummary` (L2 result cache of the architecture, 100 items by default)."""

    def __init__(self, max_items: int = 100):
        self.max_items = max_items
        self._items: OrderedDict[str, PatientSummary] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> PatientSummary | None:
        item = self._items.get(key)
        if item is None:
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return item.model_copy(deep=True)

    def put(self, key: str, summary: PatientSummary) -> None:
        if self.max_items <= 0:
            return
        self._items[key] = summary.model_copy(deep=True)
        self._items.move_to_end(key)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
