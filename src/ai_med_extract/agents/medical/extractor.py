"""MedicalExtractor: rules-and-dictionaries extraction, optionally assisted by an LLM.

The rules mode needs no model: lexicons and regular expressions propose grounded candidates, medspaCy's
ConText and sectionizer add context and sections, and the candidates become pydantic items. The LLM
mode asks the model pool for extra candidates under a JSON schema (constrained decoding); candidates
whose text is not found in the source are dropped and counted, the rest go through the same rules.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from ...errors import PayloadTooLarge
from .chunking import chunk_spans
from .clinical_context import ClinicalContext
from .rules import Candidate, RuleDetectors, _overlaps
from .schema import (
    Allergy,
    Code,
    Context,
    Lab,
    MedicalExtraction,
    Medication,
    Problem,
    Procedure,
    Section,
    Vital,
)
from .vocabulary import DRUGBANK, ICD10CM, LOINC, SNOMED, Vocabulary, load_vocabulary

if TYPE_CHECKING:
    from .llm import LLMCandidateSource, Proposal

log = logging.getLogger(__name__)

Mode = Literal["rules", "llm"]

# LOINC codes of the FHIR R4 vital-signs profiles (displays from data/loinc.txt); the oxygen
# saturation profile asks for 2708-6 next to the pulse-oximetry code
VITAL_LOINC: dict[str, tuple[str, ...]] = {
    "blood_pressure": ("85354-9",),
    "heart_rate": ("8867-4",),
    "respiratory_rate": ("9279-1",),
    "temperature": ("8310-5",),
    "spo2": ("2708-6", "59408-5"),
    "weight": ("29463-7",),
    "height": ("8302-2",),
    "bmi": ("39156-5",),
}


CHUNK_LOOKAHEAD = 400  # characters after a chunk that its extraction reads (not keeps)


@dataclass(frozen=True, slots=True)
class ExtractorLimits:
    """``chunk_chars``: texts longer than this are extracted chunk by chunk (chunks end between
    sentences, offsets stay those of the whole text). ``max_chars``: an optional hard cap for direct
    API calls; None (the default) takes any length, as the upload pipeline needs."""

    chunk_chars: int = 100_000
    max_chars: int | None = None


class MedicalExtractor:
    """Built once per process and used for many notes.

    The lexicons and the medspaCy pipeline take seconds to build, so they are built on first use
    (once, under a lock) rather than at construction: an app that never extracts never pays for them.
    ``llm`` is optional: without it only the rules mode is available.
    """

    def __init__(
        self,
        *,
        vocabulary: Vocabulary | None = None,
        llm: LLMCandidateSource | None = None,
        limits: ExtractorLimits | None = None,
    ) -> None:
        self._vocabulary = vocabulary
        self._detectors: RuleDetectors | None = None
        self._context: ClinicalContext | None = None
        self._lock = threading.Lock()
        self.llm = llm
        self.limits = limits or ExtractorLimits()

    def warm_up(self) -> None:
        """Build the lexicons and the medspaCy pipeline now (blocking)."""

        if self._context is not None:
            return
        with self._lock:
            if self._context is None:
                vocabulary = self._vocabulary or load_vocabulary()
                self._detectors = RuleDetectors(vocabulary)
                self._vocabulary = vocabulary
                self._context = ClinicalContext()

    @property
    def vocabulary(self) -> Vocabulary:
        self.warm_up()
        assert self._vocabulary is not None
        return self._vocabulary

    @property
    def detectors(self) -> RuleDetectors:
        self.warm_up()
        assert self._detectors is not None
        return self._detectors

    @property
    def context(self) -> ClinicalContext:
        self.warm_up()
        assert self._context is not None
        return self._context

    # -- public API ---------------------------------------------------------------------------------
    def extract(self, text: str, *, extra: list[Proposal] | None = None) -> MedicalExtraction:
        """Rules mode (blocking: call from a worker thread inside async code)."""

        if self.limits.max_chars is not None and len(text) > self.limits.max_chars:
            raise PayloadTooLarge(
                "text too long for medical extraction",
                code="MEDICAL_TEXT_TOO_LONG",
                details={"chars": len(text), "max_chars": self.limits.max_chars},
            )
        if len(text) <= self.limits.chunk_chars:
            return self._extract_one(text, extra or [])
        return self._extract_chunked(text, extra or [])

    def _extract_one(self, text: str, extra: list[Proposal]) -> MedicalExtraction:
        candidates = self.detectors.detect(text)
        for proposal in extra:
            cand = self.detectors.from_proposal(text, proposal.kind, proposal.start, proposal.end, proposal.detector)
            if cand is not None and not _duplicate(cand, candidates):
                candidates.append(cand)
        result = self._assemble(text, candidates)
        return result

    def _extract_chunked(self, text: str, extra: list[Proposal]) -> MedicalExtraction:
        """Each chunk extracted on its own, then shifted into the whole text and renumbered.

        A chunk is read with a little of the text after it (``CHUNK_LOOKAHEAD``), so a rule that
        looks past an item's last word sees what follows it, as in one pass; items that start in
        that look-ahead belong to the next chunk. A chunk that starts inside a section (its heading
        in an earlier chunk) keeps that section for the items before its own first heading.
        """
        out = MedicalExtraction(text_length=len(text))
        counters: dict[str, int] = {}
        carried: str | None = None
        last_end: dict[str, int] = {}
        for start, end in chunk_spans(text, self.limits.chunk_chars):
            window = min(len(text), end + CHUNK_LOOKAHEAD)
            proposals = [
                replace(p, start=p.start - start, end=p.end - start)
                for p in extra
                if start <= p.start < end and p.end <= window
            ]
            part = self._extract_one(text[start:window], proposals)
            own_sections = [s for s in part.sections if s.start < end - start]
            first_heading = own_sections[0].start if own_sections else end - start
            for kind, name in _LIST_NAME.items():
                items = getattr(out, name)
                for item in getattr(part, name):
                    if item.start >= end - start or item.start + start < last_end.get(kind, 0):
                        continue  # the next chunk's, or already taken from the previous chunk
                    counters[kind] = counters.get(kind, 0) + 1
                    update: dict[str, Any] = {
                        "id": f"{kind}-{counters[kind]}",
                        "start": item.start + start,
                        "end": item.end + start,
                    }
                    if item.section is None and carried is not None and item.start < first_heading:
                        update["section"] = carried
                    items.append(item.model_copy(update=update))
                    last_end[kind] = item.end + start
            out.sections.extend(
                s.model_copy(update={"start": s.start + start, "end": min(s.end, end - start) + start})
                for s in own_sections
            )
            if own_sections:
                carried = own_sections[-1].category
        return out

    def sentences(self, text: str) -> list[tuple[int, int]]:
        """Sentence spans of ``text`` (blocking), as the extractor itself splits them."""
        return self.context.sentences(text)

    async def aextract(self, text: str, *, mode: Mode = "rules", model: str | None = None) -> MedicalExtraction:
        if mode == "rules":
            return await asyncio.to_thread(self.extract, text)
        if self.llm is None:
            from ...errors import ServiceUnavailable

            raise ServiceUnavailable("LLM-assisted extraction is not configured", code="MEDICAL_LLM_UNAVAILABLE")
        proposed, dropped, used_model = await self.llm.candidates(text, model=model)
        result = await asyncio.to_thread(self.extract, text, extra=proposed)
        return result.model_copy(update={"mode": "llm", "llm_dropped_ungrounded": dropped, "llm_model": used_model})

    # -- assembly -------------------------------------------------------------------------------------
    def _assemble(self, text: str, candidates: list[Candidate]) -> MedicalExtraction:
        candidates.sort(key=lambda c: (c.start, c.end))
        spans = [(*c.anchor_span, c.kind) for c in candidates]
        contexts, sections = self.context.annotate(text, spans) if text.strip() else ([], [])
        out = MedicalExtraction(text_length=len(text))
        out.sections = [Section(category=s.category, title=s.title, start=s.start, end=s.end) for s in sections]
        counters: dict[str, int] = {}
        for cand, ctx in zip(candidates, contexts, strict=True):
            counters[cand.kind] = counters.get(cand.kind, 0) + 1
            base: dict[str, Any] = {
                "id": f"{cand.kind}-{counters[cand.kind]}",
                "text": text[cand.start : cand.end],
                "start": cand.start,
                "end": cand.end,
                "detector": cand.detector,
                "section": ctx.section,
                "context": Context(
                    negated=ctx.negated,
                    uncertain=ctx.uncertain,
                    historical=ctx.historical,
                    hypothetical=ctx.hypothetical,
                    subject="family" if ctx.family or ctx.section == "family_history" else "patient",
                ),
            }
            if cand.kind == "procedure" and ctx.section == "past_surgical_history":
                base["context"] = base["context"].model_copy(update={"historical": True})
            if cand.kind in ("lab", "vital"):
                # ConText cues ("no", "history") are about findings, not about measured values
                base["context"] = Context(subject=base["context"].subject)
            builder = getattr(self, f"_build_{cand.kind}")
            item = builder(cand, base)
            getattr(out, _LIST_NAME[cand.kind]).append(item)
        return out

    def _build_problem(self, c: Candidate, base: dict[str, Any]) -> Problem:
        codes = []
        if c.code:
            codes.append(Code(system=ICD10CM, code=c.code, display=self.vocabulary.icd_display(c.code)))
        return Problem(**base, name=c.name, codes=codes)

    def _build_procedure(self, c: Candidate, base: dict[str, Any]) -> Procedure:
        return Procedure(**base, name=c.name, date=c.data.get("date"), end_date=c.data.get("end_date"))

    def _build_medication(self, c: Candidate, base: dict[str, Any]) -> Medication:
        sig = c.data.get("sig")
        status = c.data.get("status", "active")
        if base["context"].negated:
            status = "not-taken"
        codes = self._drug_codes(c)
        fields: dict[str, Any] = {}
        if sig is not None:
            fields = {
                "strength": sig.strength, "dose": sig.dose, "unit": sig.unit, "route": sig.route,
                "frequency": sig.frequency, "duration": sig.duration, "prn": sig.prn,
                "prn_reason": sig.prn_reason,
            }
        ctx = base["context"]
        if fields.get("prn") and ctx.hypothetical:
            # "as needed" is itself a hypothetical cue; a PRN order is still a medication the patient has
            base["context"] = ctx.model_copy(update={"hypothetical": False})
        return Medication(**base, name=c.name, status=status, codes=codes, **fields)

    def _build_lab(self, c: Candidate, base: dict[str, Any]) -> Lab:
        d = c.data
        codes = [Code(system=LOINC, code=c.code, display=self.vocabulary.loinc[c.code])] if c.code else []
        return Lab(
            **base, name=c.name, value=d["value"], value_text=d["value_text"], unit=d["unit"],
            reference_low=d["low"], reference_high=d["high"], flag=d["flag"], date=d["date"], codes=codes,
        )

    def _build_vital(self, c: Candidate, base: dict[str, Any]) -> Vital:
        r = c.data["reading"]
        loinc = self.vocabulary.loinc
        return Vital(
            **base, kind=r.kind, value=r.value, diastolic=r.diastolic, unit=r.unit,
            original_value=r.original_value, original_unit=r.original_unit, date=c.data.get("date"),
            codes=[Code(system=LOINC, code=code, display=loinc[code]) for code in VITAL_LOINC[r.kind]],
        )

    def _build_allergy(self, c: Candidate, base: dict[str, Any]) -> Allergy:
        d = c.data
        if d.get("no_known"):
            base["context"] = Context()
            codes = [Code(system=SNOMED, code=c.code, display=self.vocabulary.snomed[c.code])] if c.code else []
            return Allergy(**base, substance=c.name, no_known_allergies=True, codes=codes)
        codes = self._drug_codes(c)
        return Allergy(
            **base, substance=c.name, category=d.get("category"), reactions=d.get("reactions", []),
            severity=d.get("severity"), codes=codes,
        )


    def _drug_codes(self, c: Candidate) -> list[Code]:
        if not c.code:
            return []
        return [Code(system=DRUGBANK, code=c.code, display=self.detectors.drug_names.get(c.code) or c.name)]


_LIST_NAME = {
    "problem": "problems", "procedure": "procedures", "medication": "medications", "lab": "labs",
    "vital": "vitals", "allergy": "allergies",
}


def _duplicate(c: Candidate, existing: list[Candidate]) -> bool:
    return any(e.kind == c.kind and _overlaps((e.start, e.end), (c.start, c.end)) for e in existing)
