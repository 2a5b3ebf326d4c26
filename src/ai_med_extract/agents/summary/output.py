"""Output shapes: statements that cite facts, sections, and the whole summary."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class Statement(BaseModel):
    text: str
    citations: list[str] = Field(default_factory=list, description="Fact ids (F1, F2 ...) the text rests on")
    generated: bool = Field(False, description="Written by a model (grounding-checked) rather than a template")
    flags: list[str] = Field(default_factory=list, description="Grounding problems when kept with flag mode")


class Trend(BaseModel):
    concept: str
    title: str
    category: str
    unit: str | None
    points: list[tuple[str, float]] = Field(description="(date, value), oldest first, most recent points only")
    latest: float
    latest_date: str
    previous: float | None = None
    change: float | None = None
    direction: Literal["rising", "falling", "stable", "single"]
    citations: list[str]


class GuidelineCheck(BaseModel):
    rule: str
    title: str
    status: Literal["met", "not_met", "not_applicable"]
    detail: str
    reference: str
    citations: list[str] = Field(default_factory=list)


class Section(BaseModel):
    key: str
    title: str
    statements: list[Statement] = Field(default_factory=list)


class GroundingReport(BaseModel):
    mode: Literal["remove", "flag"]
    checked: int = 0
    supported: int = 0
    unsupported: int = 0
    removed: int = 0
    flagged: int = 0
    claims_checked: int = 0
    unsupported_claims: dict[str, int] = Field(default_factory=dict, description="kind -> count")

    @property
    def pass_rate(self) -> float | None:
        return self.supported / self.checked if self.checked else None


class GenerationInfo(BaseModel):
    generator: Literal["model", "template"]
    model: str | None = None
    backend: str | None = None
    chunks: int = 0
    combine_rounds: int = 0
    context_window: int | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    fallbacks: list[dict[str, str]] = Field(default_factory=list)
    calls: int = Field(0, description="Model calls made")
    stopped_early: int = Field(0, description="Calls stopped when the text began to repeat itself")
    template_reason: str | None = Field(None, description="Why the template summariser was used (a code)")


class PatientSummary(BaseModel):
    overview: dict[str, Any]
    sections: dict[str, Section]
    trends: list[Trend]
    guideline_checks: list[GuidelineCheck]
    markdown: str
    grounding: GroundingReport
    generation: GenerationInfo
    input: dict[str, Any]
    facts: list[dict[str, Any]] = Field(description="The cited facts: id, kind, label, date, source")
    cached: bool = False
    cache_key: str | None = None
    duration_s: float = 0.0


class SoapNote(BaseModel):
    subjective: list[Statement]
    objective: list[Statement]
    assessment: list[Statement]
    plan: list[Statement]
    markdown: str
    grounding: GroundingReport
    generation: GenerationInfo
    facts: list[dict[str, Any]]
