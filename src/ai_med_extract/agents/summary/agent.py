"""The patient summary agent: input -> facts -> sections -> (model narrative, grounded) -> Markdown + JSON."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field

from ai_med_extract.config import SummarySettings
from ai_med_extract.errors import AppError

from .cache import SummaryCache, cache_key
from .facts import PatientRecord
from .generation import Generator, TextModel, compact_digest
from .grounding import GroundingIndex, GroundingMode, ground_text
from .guidelines import evaluate
from .inputs import load_record
from .mentions import DrugDictionary
from .output import GenerationInfo, GroundingReport, PatientSummary, Section, Statement
from .render import render_markdown
from .template import build_sections
from .text_facts import ClinicalReader, drug_dictionary, read_notes

logger = logging.getLogger(__name__)
T = TypeVar("T")

TEMPLATE_MODEL = "template"
ProgressSink = Callable[[str, float, str], Awaitable[None]]
TokenSink = Callable[[str, str], Awaitable[None]]
Blocking = Callable[..., Awaitable[Any]]


class SummaryOptions(BaseModel):
    model: str | None = Field(None, description="Model name from the catalogue; 'template' for no model")
    deidentify: bool = Field(False, description="Leave names, birth date, MRN and address out of the summary")
    grounding: Literal["remove", "flag"] | None = Field(None, description="Unsupported statements: remove or flag")
    as_of: date | None = Field(None, description="Date guideline checks are judged at (default: latest record date)")
    context_tokens: int | None = Field(
        None, ge=256, le=1_000_000, description="Use at most this much of the model's context window"
    )
    recent_points: int | None = Field(None, ge=1, le=100, description="Recent values per trend")

    def cache_fields(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"model"})


async def _to_thread(fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.to_thread(fn, *args)


class PatientSummaryAgent:
    def __init__(
        self,
        model: TextModel | None,
        settings: SummarySettings | None = None,
        *,
        drugs: DrugDictionary | None = None,
        cache: SummaryCache | None = None,
        reader: ClinicalReader | None = None,
    ):
        """``reader`` reads free-text notes (sentences, negation, sections): the medical extractor,
        handed in by the composition root. Without one, notes yield no drug or diagnosis facts."""
        self.model = model
        self.reader = reader
        self.settings = settings or SummarySettings()
        self.drugs = drugs or drug_dictionary()
        self.cache = cache if cache is not None else SummaryCache(self.settings.cache_size)

    async def summarize(
        self,
        payload: Any,
        options: SummaryOptions | None = None,
        *,
        on_token: TokenSink | None = None,
        on_progress: ProgressSink | None = None,
        run_blocking: Blocking | None = None,
    ) -> PatientSummary:
        options = options or SummaryOptions()
        blocking = run_blocking or _to_thread
        started = time.perf_counter()

        async def progress(stage: str, percent: float, message: str) -> None:
            if on_progress is not None:
                await on_progress(stage, percent, message)

        use_model = self.model is not None and options.model != TEMPLATE_MODEL
        model_name = options.model if use_model else TEMPLATE_MODEL
        key = cache_key(payload, model_name, options.cache_fields())
        hit = self.cache.get(key)
        if hit is not None:
            await progress("cache", 100.0, "served from the result cache")
            hit.cached = True
            return hit

        await progress("normalise", 5.0, "reading the record")
        record: PatientRecord = await blocking(load_record, payload)
        await blocking(read_notes, record, self.reader)
        stats = record.stats()
        await progress("normalise", 15.0, f"{stats['facts']} facts, {stats['ignored_total']} items ignored")
        as_of = options.as_of or record.last_date or date.today()
        recent = options.recent_points or self.settings.recent_points
        mode: GroundingMode = options.grounding or self.settings.grounding  # type: ignore[assignment]
        checks = await blocking(evaluate, record, self.drugs, as_of)
        overview, sections, trends = await blocking(
            lambda: build_sections(record, deidentify=options.deidentify, as_of=as_of, checks=checks,
                                   recent_points=recent)
        )
        report = GroundingReport(mode=mode)
        info = GenerationInfo(generator="template", model=TEMPLATE_MODEL)
        if not use_model:
            info.template_reason = "NO_MODEL" if self.model is None else "TEMPLATE_REQUESTED"
        else:
            assert self.model is not None
            await progress("generate", 20.0, "writing the narrative")
            gen = Generator(
                self.model, model_name=options.model, parallel=self.settings.parallel_chunks,
                timeout_s=self.settings.generation_timeout_s,
            )
            try:
                narrative, assessment = await self._generate(
                    gen, record, sections, options, on_token, progress
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any model failure: the template summary still answers
                code = exc.code if isinstance(exc, AppError) else "MODEL_ERROR"
                logger.warning("summary generation failed; using the template", extra={"error_code": code,
                                                                                          "error_type": type(exc).__name__})
                info = GenerationInfo(generator="template", model=TEMPLATE_MODEL, template_reason=code,
                                      **{k: v for k, v in gen.info().items() if k in {"chunks", "fallbacks"}})
            else:
                await progress("grounding", 90.0, "checking statements against the record")
                index = await blocking(GroundingIndex, record, self.drugs, checks)
                for name, text in (("narrative", narrative), ("assessment", assessment)):
                    grounded = await blocking(lambda t=text: ground_text(t, index, mode=mode, report=report))
                    if grounded:
                        sections[name] = Section(key=name, title=sections[name].title, statements=grounded)
                info = GenerationInfo(generator="model", **gen.info())
        if options.deidentify:
            _scrub_names(sections, record)
        markdown = render_markdown("Patient summary", sections, trends)
        cited = {c for s in sections.values() for st in s.statements for c in st.citations}
        for t in trends:
            cited.update(t.citations)
        for c in checks:
            cited.update(c.citations)
        facts = [f.to_dict() for f in record.facts if f.id in cited]
        summary = PatientSummary(
            overview=overview,
            sections=sections,
            trends=trends,
            guideline_checks=checks,
            markdown=markdown,
            grounding=report,
            generation=info,
            input=stats,
            facts=facts,
            cache_key=key,
            duration_s=round(time.perf_counter() - started, 3),
        )
        self.cache.put(key, summary)
        await progress("done", 100.0, f"{sum(len(s.statements) for s in sections.values())} statements")
        return summary

    async def _generate(
        self,
        gen: Generator,
        record: PatientRecord,
        sections: dict[str, Section],
        options: SummaryOptions,
        on_token: TokenSink | None,
        progress: ProgressSink,
    ) -> tuple[str, str]:
        async def chunk_progress(done: int, total: int) -> None:
            await progress("generate", 20.0 + 55.0 * done / total, f"chunk {done} of {total} summarised")

        digest, timeline = compact_digest(record, sections)
        narrative = await gen.narrative(
            record,
            digest=digest,
            timeline=timeline,
            max_tokens=self.settings.narrative_max_tokens,
            chunk_max_tokens=self.settings.chunk_max_tokens,
            cap=options.context_tokens,
            sink=on_token,
            progress=chunk_progress,
        )
        await progress("generate", 80.0, "writing the assessment")
        basis: list[Statement] = []
        for key in ("active_problems", "medications", "vitals_labs", "guideline_checks"):
            basis.extend(sections[key].statements)
        assessment = await gen.assessment(
            basis, max_tokens=self.settings.assessment_max_tokens, cap=options.context_tokens, sink=on_token
        )
        return narrative, assessment


def _scrub_names(sections: dict[str, Section], record: PatientRecord) -> None:
    """Remove the patient's name parts and MRN from every statement (free text can carry them)."""
    demo = record.demographics
    words = [w for w in re.split(r"[\s,]+", demo.name or "") if len(w) >= 3]
    if demo.mrn:
        words.append(demo.mrn)
    if not words:
        return
    pattern = re.compile(r"\b(" + "|".join(re.escape(w) for w in words) + r")\b", re.I)
    for section in sections.values():
        for st in section.statements:
            st.text = pattern.sub("[redacted]", st.text)
