"""The ``summary`` job: runs the summary agent (or the SOAP note writer) inside the job runner.

Job payload: ``{"record": <any accepted record shape>}`` or ``{"transcript": ...}`` for a SOAP note.
Job options: ``{"task": "summary" | "soap", "summary": <SummaryOptions fields>}``.

Progress goes out as ``progress`` events; generated text as ``token`` events ``{"section", "text"}``
on the same stream, batched so that one event carries the pieces of ``token_flush_s`` seconds.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ai_med_extract.config import SummarySettings
from ai_med_extract.errors import Unprocessable
from ai_med_extract.jobs.context import JobContext

from .agent import PatientSummaryAgent, SummaryOptions


class TokenBatcher:
    """Collects streamed pieces per section and emits them as few events as the interval allows.

    Every event of the job goes through ``lock``: chunks finish concurrently, and the event stream
    numbers events in the order they are written.
    """

    def __init__(self, ctx: JobContext, interval_s: float):
        self.ctx = ctx
        self.lock = asyncio.Lock()
        self.interval_s = interval_s
        self.section: str | None = None
        self.pieces: list[str] = []
        self.last = time.monotonic()
        self.events = 0

    async def __call__(self, section: str, text: str) -> None:
        self.ctx.check_cancelled()
        if self.section is not None and section != self.section:
            await self.flush()
        self.section = section
        self.pieces.append(text)
        if time.monotonic() - self.last >= self.interval_s:
            await self.flush()

    async def flush(self) -> None:
        async with self.lock:
            await self._flush()

    async def _flush(self) -> None:
        if self.pieces and self.section is not None:
            text, self.pieces = "".join(self.pieces), []
            await self.ctx.emit("token", {"section": self.section, "text": text})
            self.events += 1
        self.pieces = []
        self.last = time.monotonic()

    async def progress(self, stage: str, percent: float, message: str) -> None:
        self.ctx.check_cancelled()
        async with self.lock:
            await self._flush()
            await self.ctx.progress(stage, percent, message)


class SummaryJob:
    """The handler the runner calls for jobs of kind ``summary``."""

    def __init__(self, agent: PatientSummaryAgent, settings: SummarySettings):
        self.agent = agent
        self.settings = settings

    async def __call__(self, ctx: JobContext) -> dict[str, Any]:
        payload = ctx.payload if isinstance(ctx.payload, dict) else {}
        options = SummaryOptions.model_validate(ctx.options.get("summary") or {})
        tokens = TokenBatcher(ctx, self.settings.token_flush_s)

        progress = tokens.progress
        task = ctx.options.get("task", "summary")
        if task == "soap":
            from .soap import SoapWriter

            note = await SoapWriter(self.agent).write(
                payload.get("transcript"), options, on_token=tokens, on_progress=progress,
                run_blocking=ctx.run_blocking,
            )
            await tokens.flush()
            return {"soap_note": note.model_dump(mode="json")}
        if "record" not in payload:
            raise Unprocessable("the job has no patient record", code="RECORD_MISSING")
        summary = await self.agent.summarize(
            payload["record"], options, on_token=tokens, on_progress=progress, run_blocking=ctx.run_blocking
        )
        await tokens.flush()
        return {"summary": summary.model_dump(mode="json")}
