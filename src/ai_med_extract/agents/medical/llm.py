"""LLM-assisted mode: the model proposes entity mentions under a JSON schema, the rules ground them.

The request carries ``json_schema`` so the pool constrains decoding to it (llama.cpp grammar), and the
answer is read with ``model_validate_json``: no repair of malformed JSON. Each proposed mention must
occur verbatim in the note (case-insensitive); one that does not is dropped and counted. Grounded
mentions go through the same attribute rules and ConText as the rules mode.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ...inference.types import ChatMessage, GenerationRequest, GenerationResult

log = logging.getLogger(__name__)

EntityKind = Literal["problem", "medication", "procedure", "lab", "vital", "allergy"]


class ProposedEntity(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: EntityKind
    text: str = Field(min_length=1, description="Copied exactly from the note")


class ProposedEntities(BaseModel):
    model_config = ConfigDict(extra="forbid")

    entities: list[ProposedEntity]


def proposal_schema(*, max_entities: int = 40, max_text: int = 100, min_entities: int = 0) -> dict[str, Any]:
    """The JSON schema the model's output is constrained to (bounded so an answer always fits)."""

    return {
        "type": "object",
        "properties": {
            "entities": {
                "type": "array",
                "minItems": min_entities,
                "maxItems": max_entities,
                "items": {
                    "type": "object",
                    "properties": {
                        "type": {"type": "string", "enum": list(EntityKind.__args__)},  # type: ignore[attr-defined]
                        "text": {"type": "string", "minLength": 1, "maxLength": max_text},
                    },
                    "required": ["type", "text"],
                    "additionalProperties": False,
                },
            }
        },
        "required": ["entities"],
        "additionalProperties": False,
    }

SYSTEM_PROMPT = (
    "You extract clinical entities from a medical note. Types: problem (diagnoses, symptoms, findings), "
    "medication, procedure, lab, vital, allergy. For each entity copy its words exactly as they appear in "
    "the note. Answer with JSON only."
)


class GeneratesText(Protocol):
    async def generate(self, req: GenerationRequest) -> GenerationResult: ...


@dataclass(frozen=True, slots=True)
class Proposal:
    kind: str
    start: int
    end: int
    detector: str


class LLMCandidateSource:
    """Asks the model pool for entity mentions, chunk by chunk, and grounds them in the text."""

    def __init__(
        self,
        pool: GeneratesText,
        *,
        model: str | None = None,
        chunk_chars: int = 1500,
        max_tokens: int = 768,
        timeout_s: float | None = None,
        max_entities: int = 25,
        max_text: int = 80,
        min_entities: int = 0,
    ) -> None:
        self.pool = pool
        self.schema = proposal_schema(max_entities=max_entities, max_text=max_text, min_entities=min_entities)
        self.model = model
        self.chunk_chars = chunk_chars
        self.max_tokens = max_tokens
        self.timeout_s = timeout_s

    async def candidates(self, text: str, *, model: str | None = None) -> tuple[list[Proposal], int, str | None]:
        """(grounded proposals, dropped ungrounded count, model used)."""

        proposals: list[Proposal] = []
        dropped = 0
        used: str | None = None
        for offset, chunk in _chunks(text, self.chunk_chars):
            if not chunk.strip():
                continue
            request = GenerationRequest(
                messages=(ChatMessage("system", SYSTEM_PROMPT), ChatMessage("user", chunk)),
                model=model or self.model,
                max_tokens=self.max_tokens,
                temperature=0.0,
                json_schema=self.schema,
                timeout_s=self.timeout_s,
            )
            result = await self.pool.generate(request)
            used = result.model
            try:
                parsed = ProposedEntities.model_validate_json(result.text)
            except ValidationError:
                # constrained decoding can still stop at max_tokens mid-object: nothing usable
                log.warning("llm proposal not valid", extra={"finish_reason": result.finish_reason,
                                                             "chars": len(result.text)})
                continue
            for entity in parsed.entities:
                span = ground(chunk, entity.text)
                if span is None:
                    dropped += 1
                    continue
                proposals.append(
                    Proposal(entity.type, offset + span[0], offset + span[1], f"llm:{result.model}")
                )
        return proposals, dropped, used


def ground(text: str, mention: str) -> tuple[int, int] | None:
    """Where ``mention`` occurs in ``text``: exactly, else ignoring case and runs of whitespace."""

    mention = mention.strip()
    if not mention:
        return None
    at = text.find(mention)
    if at >= 0:
        return at, at + len(mention)
    pattern = r"\s+".join(re.escape(w) for w in mention.split())
    found = re.search(rf"(?<!\w){pattern}(?!\w)", text, re.IGNORECASE)
    return (found.start(), found.end()) if found else None


def _chunks(text: str, size: int) -> list[tuple[int, str]]:
    """Split at line breaks into pieces of at most about ``size`` characters, with their offsets."""

    chunks: list[tuple[int, str]] = []
    start = 0
    while start < len(text):
        end = min(len(text), start + size)
        if end < len(text):
            cut = text.rfind("\n", start, end)
            if cut > start:
                end = cut + 1
        chunks.append((start, text[start:end]))
        start = end
    return chunks
