"""The upload pipeline's ``extract_text`` stage and upload-time format check, backed by the agent.

The stage adds ``text`` (the full text) and ``extraction`` (segments with offsets, methods,
confidence, metadata) to the document, and reports progress after every page or audio chunk with
PHI-free messages (``document 1/2: page 3/10 (ocr)``). An encrypted PDF's password comes from the
job's in-memory secrets (``password``), never from stored options.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ai_med_extract.agents.text.agent import TextExtractionAgent
from ai_med_extract.agents.text.base import Step

StageFn = Callable[[Any, Any, dict[str, Any]], Awaitable[dict[str, Any]]]


def upload_validator(agent: TextExtractionAgent) -> Callable[[bytes], str]:
    """For ``POST /upload``: the media type found from the content, or a 4xx with a stable code."""

    def validate(data: bytes) -> str:
        return agent.detect(data).media_type

    return validate


def result_fields(result: Any) -> dict[str, Any]:
    """The document keys the stage adds: ``text`` and ``extraction`` (everything else, as JSON)."""
    return {"text": result.text, "extraction": result.model_dump(mode="json", exclude={"text"})}


def text_extraction_stage(
    agent: TextExtractionAgent, *, stage_count: Callable[[], int] = lambda: 1, name: str = "extract_text"
) -> StageFn:
    """``stage_count`` gives the pipeline's number of stages, so page progress fits the job's scale."""

    async def stage(ctx: Any, file: Any, doc: dict[str, Any]) -> dict[str, Any]:
        files = list(getattr(ctx, "files", []) or [file])
        index = next((i for i, f in enumerate(files) if f is file), 0)
        stages = max(1, stage_count())
        span = 100.0 / (len(files) * stages)
        base = index * stages * span

        async def on_step(step: Step) -> None:
            detail = f" ({step.detail})" if step.detail else ""
            await ctx.progress(
                name,
                base + span * step.done / max(1, step.total),
                f"document {index + 1}/{len(files)}: {step.unit} {step.done}/{step.total}{detail}",
            )

        data = await ctx.run_blocking(file.read_bytes)
        secrets = getattr(ctx, "secrets", None) or {}
        result = await agent.extract(
            data,
            password=secrets.get("password"),
            run=ctx.run_blocking,
            on_step=on_step,
            check_cancelled=ctx.check_cancelled,
        )
        return {**doc, "media_type": result.metadata.media_type, **result_fields(result)}

    return stage
