"""The upload pipeline: each document goes through the stages in order.

    extract_text  ->  scrub_phi  ->  extract_medical

A stage is an async callable ``stage(ctx, file, doc) -> doc``: it receives what it may use of the job
(``StageContext``), the stored input and the ``DocumentResult`` built so far, and returns it extended
with its own part (``text``/``extraction``, ``phi``, ``medical``). Stages run blocking work through
``ctx.run_blocking`` and report progress through ``ctx.progress``. The stages themselves are in
``jobs/upload.py``.

A stage marked ``required`` (text extraction: without text there is nothing to deliver) fails the job
when it fails. Any other stage that fails is recorded and the document goes on to the next stage, so
the text and its de-identified copy are delivered even when, say, medical extraction fails. Every
document result carries ``stages``: one ``StageOutcome`` per stage, in order, with the stable error
code of a stage that failed (``INTERNAL_ERROR`` for an unexpected error, whose message is never
passed on: it may quote the document). A stage is skipped (``STAGE_SKIPPED``) when a stage it
``needs`` failed: medical extraction is not run on text whose de-identification failed.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ai_med_extract.errors import AppError
from ai_med_extract.jobs.context import JobCancelled, JobContext, StageContext, StoredFile
from ai_med_extract.jobs.document import DocumentResult, StageOutcome, StageStatus
from ai_med_extract.observability.logs import log_exception

__all__ = ["DocumentPipeline", "Stage", "StageFn", "StageOutcome", "StageStatus"]

logger = logging.getLogger(__name__)

StageFn = Callable[[StageContext, StoredFile, DocumentResult], Awaitable[DocumentResult]]


@dataclass(frozen=True)
class Stage:
    name: str
    run: StageFn
    required: bool = False
    needs: tuple[str, ...] = ()  # stages whose failure means this one is skipped


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
            doc = DocumentResult(document_id=file.document_id, media_type=file.media_type)
            outcomes: list[StageOutcome] = []
            for position, stage in enumerate(self.stages):
                ctx.check_cancelled()
                step = index * len(self.stages) + position
                await ctx.progress(
                    stage.name,
                    100.0 * step / total,
                    f"document {index + 1} of {len(ctx.files)}: {stage.name}",
                )
                failed = {o.stage for o in outcomes if o.status is not StageStatus.succeeded}
                if failed.intersection(stage.needs):
                    outcomes.append(
                        StageOutcome(
                            stage.name, StageStatus.skipped, "STAGE_SKIPPED", "a stage this one needs failed"
                        )
                    )
                    continue
                if stage.required:
                    doc = await stage.run(ctx, file, doc)
                    outcomes.append(StageOutcome(stage.name, StageStatus.succeeded))
                    continue
                try:
                    doc = await stage.run(ctx, file, doc)
                except JobCancelled:
                    raise
                except Exception as exc:  # recorded; the document's earlier results still go out
                    if not isinstance(exc, AppError):
                        log_exception(logger, "pipeline stage failed", exc, stage=stage.name)
                    outcomes.append(StageOutcome.failure(stage.name, exc))
                    logger.info(
                        "pipeline stage failed", extra={"stage": stage.name, "error_code": outcomes[-1].code}
                    )
                else:
                    outcomes.append(StageOutcome(stage.name, StageStatus.succeeded))
            stored = dataclasses.replace(doc, stages=tuple(outcomes)).to_dict()
            await ctx.save_document_result(file.document_id, stored)
            documents.append(stored)
        await ctx.progress("done", 100.0, f"{len(documents)} document(s) processed")
        return {"documents": documents}
