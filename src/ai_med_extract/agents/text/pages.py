"""Page-level parallel work: a document's pages split into ranges that run as separate tasks.

A *page task* is a picklable module-level function ``task(data, job, pages) -> list[result]`` that
reads the pages ``pages`` of the document ``data`` from nothing but its arguments (``job`` holds the
settings and the password): the seam where a distributed engine can run page ranges on other
machines. A ``PageRunner`` runs the tasks and hands the results back one page at a time, in page
order, whatever order the tasks finish in, so progress is reported per page and the text is
assembled in page order.

- ``InlinePageRunner`` (``page_workers = 1``): one page at a time through the job's ``run``, as
  before: no extra process, cancellation between any two pages.
- ``ProcessPageRunner`` (``page_workers > 1``): a pool of that many processes (spawned, so no lock
  or thread of the service is inherited), ranges of ``page_batch`` pages; an error a task raises
  comes back with its status and stable code.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ai_med_extract.agents.text.base import Runner
from ai_med_extract.errors import (
    AppError,
    PayloadTooLarge,
    ServiceUnavailable,
    Unprocessable,
    UnsupportedMediaType,
)

T = TypeVar("T")
PageTask = Callable[[bytes, Any, range], list[Any]]


def page_ranges(total: int, batch: int) -> list[range]:
    """Consecutive ranges of at most ``batch`` pages covering ``0..total``."""
    return [range(start, min(total, start + batch)) for start in range(0, total, max(1, batch))]


class PageRunner(ABC):
    workers: int = 1

    @abstractmethod
    def results(
        self, task: PageTask, data: bytes, job: Any, total: int, run: Runner
    ) -> AsyncGenerator[tuple[int, Any], None]:
        """``(page index, result)`` for every page, in page order."""

    def close(self) -> None:  # noqa: B027 - optional
        """Stop the runner's processes, if it has any."""


class InlinePageRunner(PageRunner):
    async def results(
        self, task: PageTask, data: bytes, job: Any, total: int, run: Runner
    ) -> AsyncGenerator[tuple[int, Any], None]:
        for index in range(total):
            [result] = await run(task, data, job, range(index, index + 1))
            yield index, result


@dataclass(frozen=True, slots=True)
class _Failure:
    """An ``AppError`` raised in a worker process, carried back without its traceback."""

    status_code: int
    code: str
    message: str
    details: dict[str, Any]

    def error(self) -> AppError:
        kind = _ERRORS.get(self.status_code, AppError)
        error = kind(self.message, details=self.details, code=self.code)
        return error


_ERRORS: dict[int, type[AppError]] = {
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: Unprocessable,
    503: ServiceUnavailable,
}


def _run_task(task: PageTask, data: bytes, job: Any, pages: range) -> list[Any] | _Failure:
    try:
        return task(data, job, pages)
    except AppError as exc:
        return _Failure(exc.status_code, exc.code, exc.message, dict(exc.details))


class ProcessPageRunner(PageRunner, Generic[T]):
    def __init__(self, workers: int, batch: int):
        self.workers = workers
        self._batch = batch
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=multiprocessing.get_context("spawn")
            )
        return self._pool

    async def results(
        self, task: PageTask, data: bytes, job: Any, total: int, run: Runner
    ) -> AsyncGenerator[tuple[int, Any], None]:
        loop = asyncio.get_running_loop()
        pool = self._executor()
        ranges = page_ranges(total, self._batch)
        futures: Sequence[asyncio.Future[Any]] = [
            loop.run_in_executor(pool, _run_task, task, data, job, pages) for pages in ranges
        ]
        try:
            for pages, future in zip(ranges, futures, strict=True):
                found = await future
                if isinstance(found, _Failure):
                    raise found.error()
                for index, result in zip(pages, found, strict=True):
                    yield index, result
        finally:
            for future in futures:
                future.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.gather(*futures, return_exceptions=True)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def page_runner(workers: int, batch: int) -> PageRunner:
    return InlinePageRunner() if workers <= 1 else ProcessPageRunner(workers, batch)
