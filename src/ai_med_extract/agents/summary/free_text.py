"""A summary of free clinical text, written by one model of the pool in one call.

``POST /api/generate_summary`` and ``POST /api/patient_summary_openvino`` use it: unlike the patient
summary agent (``agent.py``), it reads no record structure and checks no grounding; it asks the model
for a short summary with ``SUMMARY_INSTRUCTIONS`` and reports every fallback the pool took.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from ai_med_extract.inference.catalogue import ModelType
from ai_med_extract.inference.pool import ModelPool
from ai_med_extract.inference.types import ChatMessage, Fallback, GenerationRequest, GenerationResult

SUMMARY_INSTRUCTIONS = (
    "You are a clinical documentation assistant. Summarise the clinical text for a clinician: "
    "presenting problem, diagnoses, treatments, key results and follow-up. Use only facts stated in the "
    "text; do not invent values. Write plain sentences."
)


def summary_request(text: str, model: str | None, max_tokens: int, temperature: float) -> GenerationRequest:
    return GenerationRequest(
        messages=(ChatMessage("system", SUMMARY_INSTRUCTIONS), ChatMessage("user", text)),
        model=model,
        max_tokens=max_tokens,
        temperature=temperature,
    )


async def summarize_text(
    pool: ModelPool, text: str, *, model: str | None, max_tokens: int, temperature: float
) -> GenerationResult:
    return await pool.generate(summary_request(text, model, max_tokens, temperature))


def stream_summary(
    pool: ModelPool,
    text: str,
    *,
    model: str | None,
    max_tokens: int,
    temperature: float,
    fallbacks: list[Fallback],
) -> AsyncGenerator[str, None]:
    """The summary's pieces as they are generated; ``fallbacks`` fills as the pool takes them."""
    return pool.stream(summary_request(text, model, max_tokens, temperature), fallbacks=fallbacks)


def record_as_text(data: dict[str, Any] | list[Any]) -> str:
    """A structured record as indented ``key: value`` lines the models read well."""
    lines: list[str] = []

    def walk(value: Any, indent: int, label: str | None) -> None:
        pad = "  " * indent
        if isinstance(value, dict):
            if label:
                lines.append(f"{pad}{label}:")
            for key, item in value.items():
                walk(item, indent + (1 if label else 0), str(key))
        elif isinstance(value, list):
            if label:
                lines.append(f"{pad}{label}:")
            for item in value:
                if isinstance(item, dict | list):
                    walk(item, indent + 1, None)
                else:
                    lines.append(f"{pad}  - {item}")
        else:
            lines.append(f"{pad}{label}: {value}" if label else f"{pad}{value}")

    walk(data, 0, None)
    return "\n".join(lines)


def openvino_model(pool: ModelPool) -> str | None:
    """The catalogue's OpenVINO patient-summary model (the active one first), if it has one."""
    entries = [e for e in pool.catalogue.patient_summary_models if e.type is ModelType.openvino]
    active = [e for e in entries if e.is_active]
    chosen = (active or entries)[:1]
    return chosen[0].name if chosen else None
