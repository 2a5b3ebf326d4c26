"""Cutting a long text into chunks that end between sentences, for extraction chunk by chunk.

A chunk ends, in order of preference, at a paragraph break, at the end of a sentence (``.``, ``!`` or
``?`` followed by white space and a capital letter or a digit), at a line break, at white space;
only a text with none of these in the second half of a chunk is cut mid-word. Spans are
``(start, end)`` offsets into the whole text; together they cover it exactly, in order.
"""

from __future__ import annotations

import re

_BOUNDARIES = (
    re.compile(r"\n[ \t]*\n\s*"),
    re.compile(r"[.!?][\"')\]]*\s+(?=[A-Z0-9\"'(\[])"),
    re.compile(r"\n\s*"),
    re.compile(r"\s+"),
)


def chunk_spans(text: str, max_chars: int) -> list[tuple[int, int]]:
    """``(start, end)`` of chunks at most ``max_chars`` long (``max_chars`` >= 2)."""
    if max_chars < 2:
        raise ValueError("max_chars must be at least 2")
    spans: list[tuple[int, int]] = []
    start = 0
    length = len(text)
    while length - start > max_chars:
        limit = start + max_chars
        cut = _last_boundary(text, start + max_chars // 2, limit) or limit
        spans.append((start, cut))
        start = cut
    spans.append((start, length))
    return spans


def _last_boundary(text: str, floor: int, limit: int) -> int | None:
    for pattern in _BOUNDARIES:
        cut = None
        for match in pattern.finditer(text, floor, limit):
            cut = match.end()
        if cut is not None:
            return cut
    return None
