"""Page-level parallel work: a document's pages split into ranges that run as separate tasks.

A *page task* is a picklable module-level function ``task(data, job, pages) -> list[result]`` that
reads the pages ``pages`` of the document ``data`` from nothing but its arguments (``job`` holds the
settings and the password): the seam where a distributed engine can run page ranges on other
machines. A ``PageRunner`` runs the tasks and hands the results back one page at a time, in page
order, whatever order the tasks finish in, so progress is reported per page and the text is
assembled in page order.

- ``InlinePageRunner`` (``page_workers = 1``): one page at a time through the job's ``run``, as
  before: no extra process, cancellation between any two pages.
- ``ProcessPageRunner`` (``page_workers > 1``): up to that many ranges of ``page_batch`` pages at
  once, each in a parsing process; an error a task raises comes back with its status and stable code.

Parsing processes (``ParseProcesses``) are where hostile input is parsed: spawned children (no lock
or thread of the service inherited), kept warm between documents, that run one task at a time and
stream its results back over a pipe. A task still running at its document's deadline has its process
killed: the document fails with ``EXTRACTION_TIMEOUT`` (422), the job ends, and the next task gets a
fresh process (the time a process takes to start is not counted against the deadline). A process that dies (a crash in a native parser) fails its document with
``PARSER_CRASHED`` (422). A caller that stops reading (a cancelled or timed-out job) kills it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import signal
import threading
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from ai_med_extract.agents.text.base import Runner
from ai_med_extract.errors import (
    AppError,
    PayloadTooLarge,
    ServiceUnavailable,
    Unprocessable,
    UnsupportedMediaType,
)

logger = logging.getLogger(__name__)
START_TIMEOUT_S = 120.0  # a parsing process's start and imports (not counted in any document's deadline)
PageTask = Callable[[bytes, Any, range], list[Any]]


def page_ranges(total: int, batch: int) -> list[range]:
    """Consecutive ranges of at most ``batch`` pages covering ``0..total``."""
    return [range(start, min(total, start + batch)) for start in range(0, total, max(1, batch))]


class PageRunner(ABC):
    workers: int = 1

    @abstractmethod
    def results(
        self, task: PageTask, data: bytes, job: Any, total: int, run: Runner, deadline: Deadline | None = None,
    ) -> AsyncGenerator[tuple[int, Any], None]:
        """``(page index, result)`` for every page, in page order (past ``deadline`` the work is
        killed, where it runs in a parsing process)."""

    def close(self) -> None:  # noqa: B027 - optional
        """Stop the runner's processes, if it has any."""


class InlinePageRunner(PageRunner):
    async def results(
        self, task: PageTask, data: bytes, job: Any, total: int, run: Runner, deadline: Deadline | None = None,
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


class Deadline:
    """One document's parsing deadline, shared by all its tasks: ``limit_s`` of parsing, not
    counting the time spent waiting for parsing processes to start."""

    def __init__(self, limit_s: float):
        self.limit_s = limit_s
        self.at = time.monotonic() + limit_s

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def extend(self, seconds: float) -> None:
        self.at += seconds


def parse_timeout(limit_s: float) -> Unprocessable:
    return Unprocessable(
        "parsing the document took longer than allowed", code="EXTRACTION_TIMEOUT", details={"timeout_s": limit_s}
    )


def parser_crashed() -> Unprocessable:
    return Unprocessable("the document parser stopped unexpectedly on this file", code="PARSER_CRASHED")


def _serve(conn: Connection) -> None:
    """A parsing process's loop: run each task sent, send its results back, until the pipe ends."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    import ai_med_extract.agents.text  # noqa: F401 - the parsers, loaded before the first deadline runs

    conn.send(("ready", None))
    while True:
        try:
            fn, args, kwargs, streaming = conn.recv()
        except (EOFError, OSError):
            break
        try:
            if streaming:
                for item in fn(*args, **kwargs):
                    conn.send(("item", item))
                conn.send(("done", None))
            else:
                conn.send(("done", fn(*args, **kwargs)))
        except AppError as exc:
            conn.send(("error", _Failure(exc.status_code, exc.code, exc.message, dict(exc.details))))
        except Exception as exc:  # noqa: BLE001 - the type only: a message may quote the document
            conn.send(("crash", type(exc).__name__))
    conn.close()


class _Process:
    def __init__(self) -> None:
        spawn = multiprocessing.get_context("spawn")
        self.conn, child = spawn.Pipe(duplex=True)
        self.process = spawn.Process(target=_serve, args=(child,), name="document-parser", daemon=True)
        self.process.start()
        child.close()  # the child's end lives in the child: its death reads as end of file here
        try:
            ready = self.conn.poll(START_TIMEOUT_S) and self.conn.recv()[0] == "ready"
        except (EOFError, OSError):
            ready = False
        if not ready:
            self.kill()
            raise parser_crashed()

    def alive(self) -> bool:
        return self.process.is_alive()

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()

    def close(self) -> None:
        self.conn.close()  # the child reads end of file and leaves
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.kill()


async def _readable(conn: Connection, timeout: float | None) -> bool:
    """Wait on the event loop (no thread) until ``conn`` has a message or end of file."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    fd = conn.fileno()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await asyncio.wait_for(ready, timeout)
        return True
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(fd)


def _kill_when_started(starting: asyncio.Future[_Process]) -> None:
    if not starting.cancelled() and starting.exception() is None:
        starting.result().kill()


def _end_idle(idle: list[_Process]) -> None:
    for process in idle:
        process.conn.close()  # the child reads end of file and leaves
    idle.clear()


class ParseProcesses:
    """Warm parsing processes that run tasks under a deadline; see the module docstring."""

    def __init__(self, keep: int = 2):
        self._keep = keep
        self._idle: list[_Process] = []
        self._lock = threading.Lock()
        self.started = 0  # processes started so far (a killed one is replaced by a new one)
        # An owner that never calls close(): its idle processes still end with it.
        weakref.finalize(self, _end_idle, self._idle)

    def _take(self) -> _Process:
        with self._lock:
            while self._idle:
                process = self._idle.pop()
                if process.alive():
                    return process
                process.kill()
            self.started += 1
        return _Process()

    def _give(self, process: _Process) -> None:
        with self._lock:
            if len(self._idle) < self._keep and process.alive():
                self._idle.append(process)
                return
        process.close()

    async def stream(
        self, fn: Callable[..., Any], *args: Any, deadline: Deadline | None, streaming: bool = True, **kwargs: Any
    ) -> AsyncGenerator[Any, None]:
        """The items ``fn(*args, **kwargs)`` (a picklable generator function) yields in a parsing
        process, or, with ``streaming=False``, its one return value."""
        asked = time.monotonic()
        starting = asyncio.get_running_loop().run_in_executor(None, self._take)
        try:
            process = await asyncio.shield(starting)
        except asyncio.CancelledError:  # the reader left while a process was starting for it
            starting.add_done_callback(_kill_when_started)
            raise
        if deadline is not None:
            deadline.extend(time.monotonic() - asked)  # waiting for a process to start is not parsing
        clean = False
        try:
            process.conn.send((fn, args, kwargs, streaming))
            while True:
                if deadline is not None and (
                    deadline.remaining() <= 0 or not await _readable(process.conn, deadline.remaining())
                ):
                    logger.warning("document parsing past its deadline; process killed",
                                   extra={"timeout_s": deadline.limit_s})
                    raise parse_timeout(deadline.limit_s)
                try:
                    kind, value = process.conn.recv()
                except (EOFError, OSError):
                    logger.error("document parser process died", extra={"exit_code": process.process.exitcode})
                    raise parser_crashed() from None
                if kind == "item":
                    yield value
                    continue
                clean = True
                if kind == "done":
                    if not streaming:
                        yield value
                    return
                if kind == "error":
                    raise value.error()
                logger.error("document parser failed", extra={"error_type": str(value)})
                raise parser_crashed()
        finally:
            if clean:
                self._give(process)
            else:  # past the deadline, dead, or the reader stopped mid-task: it cannot be reused
                process.kill()

    async def call(self, fn: Callable[..., Any], *args: Any, deadline: Deadline | None, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` run in a parsing process."""
        results = self.stream(fn, *args, deadline=deadline, streaming=False, **kwargs)
        async with contextlib.aclosing(results):
            async for value in results:
                return value
        raise parser_crashed()  # pragma: no cover - a finished call always yields its value

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for process in idle:
            process.close()


@dataclass(frozen=True)
class ParseRunner:
    """A ``Runner`` that runs each call in a parsing process under one document's deadline; what
    the agent hands the extractors of formats parsed by libraries that a hostile file can hold."""

    processes: ParseProcesses
    deadline: Deadline
    fallback: Runner  # the job's own runner, for work that must stay in this process

    async def __call__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await self.processes.call(fn, *args, deadline=self.deadline, **kwargs)


def _range_task(task: PageTask, data: bytes, job: Any, pages: range) -> list[Any]:
    return task(data, job, pages)


class ProcessPageRunner(PageRunner):
    def __init__(self, workers: int, batch: int, processes: ParseProcesses | None = None):
        self.workers = workers
        self._batch = batch
        self._processes = processes or ParseProcesses(keep=workers)
        self._own = processes is None

    async def results(
        self, task: PageTask, data: bytes, job: Any, total: int, run: Runner, deadline: Deadline | None = None,
    ) -> AsyncGenerator[tuple[int, Any], None]:
        ranges = page_ranges(total, self._batch)
        slots = asyncio.Semaphore(self.workers)

        async def one(pages: range) -> list[Any]:
            async with slots:
                return await self._processes.call(_range_task, task, data, job, pages, deadline=deadline)  # type: ignore[no-any-return]

        tasks = [asyncio.ensure_future(one(pages)) for pages in ranges]
        try:
            for pages, future in zip(ranges, tasks, strict=True):
                found = await future
                for index, result in zip(pages, found, strict=True):
                    yield index, result
        finally:
            for future in tasks:
                future.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.gather(*tasks, return_exceptions=True)

    def close(self) -> None:
        if self._own:
            self._processes.close()


def page_runner(workers: int, batch: int, processes: ParseProcesses | None = None) -> PageRunner:
    return InlinePageRunner() if workers <= 1 else ProcessPageRunner(workers, batch, processes)
