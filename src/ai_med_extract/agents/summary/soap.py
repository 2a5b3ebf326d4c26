"""SOAP notes from an encounter transcript (plain text, or the segments ``POST /transcribe`` returns).

Each sentence of the transcript is a fact (citable, with its segment and character span); drugs,
measurements and diagnoses inside it become facts too. A model writes the four sections as
schema-constrained JSON, and every item goes through the same grounding check as summaries; when no
model is available or its output does not parse, sentences are sorted into the sections by rules.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ValidationError

from ai_med_extract.errors import Unprocessable
from ai_med_extract.inference.types import ChatMessage, GenerationRequest

from .agent import (
    TEMPLATE_MODEL,
    Blocking,
    PatientSummaryAgent,
    ProgressSink,
    SummaryOptions,
    TokenSink,
    _to_thread,
)
from .facts import FactKind, InputKind, PatientRecord, SourceRef
from .grounding import GroundingIndex, GroundingMode, ground_text
from .mentions import find_measurements, sentences
from .output import GenerationInfo, GroundingReport, Section, SoapNote, Statement
from .render import render_markdown
from .text_facts import add_note, read_notes

MAX_TRANSCRIPT_CHARS = 200_000
_SPEAKER = re.compile(r"^\s*(doctor|dr|physician|clinician|provider|patient|pt|nurse)\s*[:\-]\s*", re.I)
_PLAN = re.compile(
    r"\b(start|started|prescrib|continue|increase|decrease|reduce|stop|discontinue|refer|follow[- ]?up|return|"
    r"schedule|order|recheck|recommend|advise|we will|we'll|i will|i'll|plan)\w*", re.I)
_ASSESS = re.compile(
    r"\b(diagnos|likely|consistent with|impression|assessment|suspect|probabl|rule out|looks like|"
    r"this is|you have|uncontrolled|controlled|worsening|improving)\w*", re.I)
_OBJECT = re.compile(
    r"\b(blood pressure|bp|heart rate|pulse|temperature|exam|examination|auscultation|lungs|heart sounds|"
    r"weight|oxygen|spo2|saturation|a1c|hba1c|lab|labs|result|results|measured|tender|swelling|rash)\b", re.I)

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {k: {"type": "array", "items": {"type": "string"}, "maxItems": 8}
                   for k in ("subjective", "objective", "assessment", "plan")},
    "required": ["subjective", "objective", "assessment", "plan"],
}
PROMPT = (
    "Encounter transcript, one sentence per line with its id:\n{lines}\n\n"
    "Write a SOAP note as JSON with the keys subjective, objective, assessment and plan, each a list of "
    "short statements taken from the transcript. Use only what the transcript says."
)


class _Soap(BaseModel):
    subjective: list[str]
    objective: list[str]
    assessment: list[str]
    plan: list[str]


def transcript_record(transcript: Any) -> PatientRecord:
    """Sentences of the transcript as note facts (blocking: run off the event loop)."""
    record = PatientRecord(kind=InputKind.notes)
    pieces: list[tuple[str, str]] = []
    if isinstance(transcript, str):
        pieces = [("transcript", transcript)]
    elif isinstance(transcript, dict) and isinstance(transcript.get("segments"), list):
        for i, seg in enumerate(transcript["segments"]):
            if not isinstance(seg, dict) or not isinstance(seg.get("text"), str):
                raise Unprocessable("each segment needs a text", code="TRANSCRIPT_INVALID",
                                    details={"errors": [{"loc": f"segments[{i}].text", "type": "string_type"}]})
            pieces.append((f"segments[{i}]", seg["text"]))
    elif isinstance(transcript, dict) and isinstance(transcript.get("text"), str):
        pieces = [("text", transcript["text"])]
    else:
        raise Unprocessable("transcript must be text or {segments: [...]}", code="TRANSCRIPT_INVALID",
                            details={"errors": [{"loc": "transcript", "type": "type"}]})
    if sum(len(t) for _, t in pieces) > MAX_TRANSCRIPT_CHARS:
        raise Unprocessable("transcript is too long", code="TRANSCRIPT_TOO_LONG",
                            details={"max_chars": MAX_TRANSCRIPT_CHARS})
    for path, text in pieces:
        for sentence, start, end in sentences(text):
            add_note(record, sentence, SourceRef(path, (start, end)), label="utterance")
    if not record.facts:
        raise Unprocessable("transcript is empty", code="TRANSCRIPT_EMPTY")
    return record


def classify(text: str) -> str:
    speaker = _SPEAKER.match(text)
    who = speaker.group(1).lower() if speaker else None
    if _PLAN.search(text) and who not in {"patient", "pt"}:
        return "plan"
    if _ASSESS.search(text) and who not in {"patient", "pt"}:
        return "assessment"
    if (_OBJECT.search(text) or find_measurements(text)) and who not in {"patient", "pt"}:
        return "objective"
    return "subjective"


def template_soap(record: PatientRecord) -> dict[str, list[Statement]]:
    out: dict[str, list[Statement]] = {"subjective": [], "objective": [], "assessment": [], "plan": []}
    for fact in record.of_kind(FactKind.note):
        text = fact.detail or ""
        if len(re.findall(r"[A-Za-z]{2,}", text)) < 2:
            continue
        cleaned = _SPEAKER.sub("", text).strip()
        if cleaned.endswith("?") and not re.match(r"^\s*(patient|pt)\b", text, re.I):
            continue  # the clinician's questions are not findings
        out[classify(text)].append(Statement(text=cleaned, citations=[fact.id]))
    return out


class SoapWriter:
    def __init__(self, agent: PatientSummaryAgent):
        self.agent = agent

    async def write(
        self,
        transcript: Any,
        options: SummaryOptions | None = None,
        *,
        on_token: TokenSink | None = None,
        on_progress: ProgressSink | None = None,
        run_blocking: Blocking | None = None,
    ) -> SoapNote:
        options = options or SummaryOptions()
        blocking = run_blocking or _to_thread
        if on_progress:
            await on_progress("normalise", 5.0, "reading the transcript")
        record: PatientRecord = await blocking(transcript_record, transcript)
        await blocking(read_notes, record, self.agent.reader)
        mode: GroundingMode = options.grounding or self.agent.settings.grounding  # type: ignore[assignment]
        report = GroundingReport(mode=mode)
        sections = await blocking(template_soap, record)
        info = GenerationInfo(generator="template", model=TEMPLATE_MODEL,
                              template_reason="NO_MODEL" if self.agent.model is None else None)
        model = self.agent.model
        if model is not None and options.model != TEMPLATE_MODEL:
            if on_progress:
                await on_progress("generate", 20.0, "writing the note")
            lines = "\n".join(f"[{f.id}] {f.detail}" for f in record.of_kind(FactKind.note))
            req = GenerationRequest(
                messages=(ChatMessage("user", PROMPT.format(lines=lines)),),
                model=options.model, max_tokens=self.agent.settings.narrative_max_tokens, temperature=0.0,
                json_schema=SCHEMA,
            )
            try:
                if on_token is None:
                    result = await model.generate(req)
                    text, info = result.text, GenerationInfo(
                        generator="model", model=result.model, backend=result.backend,
                        prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens)
                else:
                    parts = []
                    async for piece in model.stream(req):
                        parts.append(piece)
                        await on_token("soap", piece)
                    text, info = "".join(parts), GenerationInfo(generator="model", model=options.model)
                parsed = _Soap.model_validate_json(text)
            except (ValidationError, json.JSONDecodeError):
                info = GenerationInfo(generator="template", model=TEMPLATE_MODEL, template_reason="MODEL_OUTPUT_INVALID")
            except Exception as exc:  # any model failure: the rule-based note still answers
                code = getattr(exc, "code", "MODEL_ERROR")
                info = GenerationInfo(generator="template", model=TEMPLATE_MODEL, template_reason=str(code))
            else:
                index = await blocking(GroundingIndex, record, self.agent.drugs)
                generated = {
                    key: ground_text("\n".join(items), index, mode=mode, report=report)
                    for key, items in parsed.model_dump().items()
                }
                if any(generated.values()):
                    sections = generated
                else:
                    info.template_reason = "NO_GROUNDED_OUTPUT"
                    info.generator = "template"
        titled = {k: Section(key=k, title=k.capitalize(), statements=v) for k, v in sections.items()}
        cited = {c for v in sections.values() for s in v for c in s.citations}
        if on_progress:
            await on_progress("done", 100.0, f"{sum(len(v) for v in sections.values())} statements")
        return SoapNote(
            subjective=sections["subjective"], objective=sections["objective"],
            assessment=sections["assessment"], plan=sections["plan"],
            markdown=render_markdown("SOAP note", titled), grounding=report, generation=info,
            facts=[f.to_dict() for f in record.facts if f.id in cited],
        )
