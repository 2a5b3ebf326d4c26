"""The upload pipeline: each document goes through the stages in order.

    extract_text  ->  scrub_phi  ->  extract_medical

A stage is an async callable ``stage(ctx, file, doc) -> doc``: it receives the job context, the
stored input and the document result built so far (a dict), and returns it extended with its own
key (``text``/``extraction``, ``phi``, ``medical``). Stages run blocking work through
``ctx.run_blocking`` and report progress through ``ctx.progress``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ai_med_extract.jobs.context import JobContext, StoredFile

StageFn = Callable[[JobContext, StoredFile, dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Stage:
    name: str
    run: StageFn


class DocumentPipeline:
    """The ``upload`` job handler."""

    def __init__(self, stages: Sequence[Stage]):
        if not stages:
            raise ValueError("a pipeline needs at least one stage")
        self.stages = list(stages)

    async def __call__(self, ctx: JobContext) -> dict[str, Any]:
        total = max(1, len(ctx.files)) * len(self.stages)
        documents: list[dict[str, Any]] = []
        for index, file in enumerate(ctx.files):
            doc: dict[str, Any] = {"document_id": file.document_id, "media_type": file.media_type}
            for position, stage in enumerate(self.stages):
                ctx.check_cancelled()
                step = index * len(self.stages) + position
                await ctx.progress(
                    stage.name, 100.0 * step / total, f"document {index + 1} of {len(ctx.files)}: {stage.name}"
                )
                doc = await stage.run(ctx, file, doc)
            await ctx.save_document_result(file.document_id, doc)
            documents.append(doc)
        await ctx.progress("done", 100.0, f"{len(documents)} document(s) processed")
        return {"documents": documents}
