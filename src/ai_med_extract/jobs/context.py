"""What a job's stages see: its stored inputs, progress reporting, cancellation and the worker pool."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from ai_med_extract.errors import AppError
from ai_med_extract.storage.files import FileStore

T = TypeVar("T")


class JobCancelled(AppError):
    status_code = 409
    code = "JOB_CANCELLED"


@dataclass
class StoredFile:
    """One uploaded input of a job. ``read_bytes`` decrypts it from the file store."""

    document_id: str
    position: int
    media_type: str | None
    size: int
    sha256: str
    storage_key: str
    store: FileStore
    options: dict[str, Any] = field(default_factory=dict)
    filename: str | None = None  # decrypted; for display only, never logged

    def read_bytes(self) -> bytes:
        return self.store.get(self.storage_key)


class StageContext(Protocol):
    """What a pipeline stage may use of its job (``JobContext`` is the one implementation)."""

    job_id: str
    options: dict[str, Any]
    files: list[StoredFile]
    secrets: dict[str, str]

    async def progress(self, stage: str, percent: float, message: str = "") -> None: ...

    def check_cancelled(self) -> None: ...

    async def run_blocking(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T: ...

    def options_for(self, file: StoredFile) -> dict[str, Any]: ...


class JobContext:
    def __init__(
        self,
        *,
        job_id: str,
        kind: str,
        options: dict[str, Any],
        files: list[StoredFile],
        payload: Any,
        executor: Executor,
        loop: asyncio.AbstractEventLoop,
        emit: Callable[[str, dict[str, Any]], Any],
        save_document: Callable[[str, dict[str, Any]], Any],
        secrets: dict[str, str] | None = None,
    ):
        self.job_id = job_id
        self.kind = kind
        self.options = options
        self.files = files
        self.payload = payload  # decrypted job input for non-file jobs (e.g. a patient record)
        self.secrets = secrets or {}  # per-job secrets held in memory only (e.g. a PDF password)
        self._executor = executor
        self._loop = loop
        self._emit = emit
        self._save_document = save_document
        self._cancelled = asyncio.Event()
        self.cancel_requested = False

    def options_for(self, file: StoredFile) -> dict[str, Any]:
        """The job's options with the file's own options over them."""
        return {**self.options, **file.options}

    # -- progress ---------------------------------------------------------------------------
    async def progress(self, stage: str, percent: float, message: str = "") -> None:
        """Report progress; ``message`` must be PHI-free (counts, page numbers, stage names)."""
        percent = max(0.0, min(100.0, float(percent)))
        await self._emit("progress", {"stage": stage, "percent": round(percent, 1), "message": message})

    async def emit(self, event: str, data: dict[str, Any]) -> None:
        """Publish another event on the job's stream (e.g. ``token`` while generating)."""
        await self._emit(event, data)

    def report(self, stage: str, percent: float, message: str = "") -> None:
        """``progress`` for code running in the worker pool (thread-safe, waits for the write)."""
        future = asyncio.run_coroutine_threadsafe(self.progress(stage, percent, message), self._loop)
        future.result(timeout=30)

    async def save_document_result(self, document_id: str, result: dict[str, Any]) -> None:
        await self._save_document(document_id, result)

    # -- cancellation -----------------------------------------------------------------------
    def cancel(self) -> None:
        self.cancel_requested = True

    def check_cancelled(self) -> None:
        """Call between units of work (pages, chunks); raises when the job was cancelled."""
        if self.cancel_requested:
            raise JobCancelled("job was cancelled")

    # -- blocking work ----------------------------------------------------------------------
    async def run_blocking(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run CPU-bound or blocking work in the worker pool, never on the event loop."""
        self.check_cancelled()
        result = await self._loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))
        self.check_cancelled()
        return result
