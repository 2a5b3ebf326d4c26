"""Operators placeholder (filled below)."""

from __future__ import annotations

from ai_med_extract.agents.phi.types import Operator, PhiSpan, ScrubResult


class OperatorEngine:
    def apply(self, text: str, spans: list[PhiSpan], op: Operator, *, patient_key: str | None = None) -> ScrubResult:
        parts = []
        pos = 0
        for s in spans:
            parts.append(text[pos : s.start])
            parts.append(f"[{s.label}]")
            pos = s.end
        parts.append(text[pos:])
        return ScrubResult("".join(parts), spans, op)
