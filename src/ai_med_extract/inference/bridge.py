"""The thread bridge: backend code runs in worker threads; the event loop only awaits it.

- ``call`` runs one blocking backend call with a deadline; ``stream`` runs a backend's token iterator
  and hands its pieces to the loop with bounded read-ahead.
- On a timeout or a cancelled caller, the call's cancel flag is set and the backend interrupted; the
  bridge then waits for the thread to stop, so that no backend code runs on after its caller left.
- A backend's exception becomes the product's error in one place (:func:`_as_app_error`): a cancel is
  a ``GENERATION_TIMEOUT``, an ``AppError`` stays itself, anything else is ``GENERATION_FAILED`` with
  its type name only (an exception's text may hold prompt text).
- The bridge counts the threads inside each backend, so a backend is never unloaded under one of
  them (``unload_when_idle``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NoReturn, TypeVar

from ai_med_extract.errors import AppError
from ai_med_extract.inference.backends.base import Backend, GenerationCancelled, TextBackend
from ai_med_extract.inference.errors import GenerationFailed, GenerationTimeout, describe
from ai_med_extract.inference.types import GenerationRequest

logger = logging.getLogger(__name__)

T = TypeVar("T")
STREAM_AHEAD = 32  # token pieces a stream may produce before its reader has taken them
_DONE = object()


def _as_app_error(exc: BaseException) -> NoReturn:
    """Raise what a backend's exception means to the caller (the one translation, calls and streams)."""
    if isinstance(exc, GenerationCancelled):
        raise GenerationTimeout("generation was cancelled") from None
    if isinstance(exc, AppError):
        raise exc
    logger.error("backend failure", extra=describe(exc))
    raise GenerationFailed(f"the model failed ({type(exc).__name__})") from exc


class ThreadBridge:
    def __init__(self, *, max_workers: int, timeout_s: float):
        self.timeout_s = timeout_s  # reported in GENERATION_TIMEOUT details
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="model-pool")
        # Threads currently inside each backend's code (by id): a backend is never unloaded while
        # one of them runs, even one whose caller has gone away (timeout, abandoned stream).
        self._inside: Counter[int] = Counter()
        self._inside_changed = threading.Condition()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` in a worker thread, as it is: no deadline, no translation (loads, file work)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def call(
        self,
        fn: Callable[..., T],
        *args: Any,
        deadline: float | None = None,
        cancel: threading.Event | None = None,
        interrupt: Backend | None = None,
    ) -> T:
        """Run the backend method ``fn`` in a worker thread; on timeout or cancellation, flag it and
        wait for it to stop."""
        loop = asyncio.get_running_loop()
        owner = getattr(fn, "__self__", None)
        future: asyncio.Future[T] = loop.run_in_executor(
            self._executor, self._inside_backend(owner, fn) if owner is not None else fn, *args
        )
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            await self._stop(future, cancel, interrupt)
            raise self._timed_out() from None
        except asyncio.CancelledError:
            await self._stop(future, cancel, interrupt)
            raise
        except Exception as exc:
            _as_app_error(exc)

    async def stream(self, backend: TextBackend, req: GenerationRequest, deadline: float) -> AsyncIterator[str]:
        """Run the backend's token iterator in a thread and hand its pieces to the event loop."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancel = threading.Event()
        room = threading.Semaphore(STREAM_AHEAD)  # a slow reader holds the generation back

        def work() -> None:
            try:
                for piece in backend.stream(req, cancel):
                    while not room.acquire(timeout=0.05) and not cancel.is_set():
                        pass
                    if cancel.is_set():
                        break
                    loop.call_soon_threadsafe(queue.put_nowait, piece)
                loop.call_soon_threadsafe(queue.put_nowait, _DONE)
            except BaseException as exc:  # handed to the consumer
                loop.call_soon_threadsafe(queue.put_nowait, exc)

        future = loop.run_in_executor(self._executor, self._inside_backend(backend, work))
        try:
            while True:
                timeout = max(0.0, deadline - time.monotonic())
                try:
                    item = await asyncio.wait_for(queue.get(), timeout)
                except TimeoutError:
                    raise self._timed_out() from None
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    _as_app_error(item)
                room.release()
                yield item
        finally:
            if not future.done():
                cancel.set()
                self.interrupt(backend)
            await _drain(future)

    def unload_when_idle(self, backend: Backend, wait_s: float = 120.0) -> None:
        """Unload once no thread is inside the backend (interrupting any that still is). Blocking."""
        key = id(backend)
        with self._inside_changed:
            if self._inside[key]:
                self.interrupt(backend)
            if not self._inside_changed.wait_for(lambda: self._inside[key] <= 0, timeout=wait_s):
                logger.error("model still busy after interrupt; unloading anyway")
            self._inside.pop(key, None)
        backend.unload()

    @staticmethod
    def interrupt(backend: Backend | None) -> None:
        if backend is None:
            return
        try:
            backend.interrupt()
        except Exception as exc:  # best effort: the cancel flag still stops it between tokens
            logger.warning("interrupt failed", extra=describe(exc))

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _timed_out(self) -> GenerationTimeout:
        return GenerationTimeout(
            "generation did not finish within its time limit", details={"timeout_s": self.timeout_s}
        )

    async def _stop(
        self, future: Awaitable[Any], cancel: threading.Event | None, backend: Backend | None
    ) -> None:
        if cancel is not None:
            cancel.set()
            self.interrupt(backend)
        await _drain(future)

    def _inside_backend(self, backend: Any, fn: Callable[..., T]) -> Callable[..., T]:
        key = id(backend)

        def run(*args: Any) -> T:
            with self._inside_changed:
                self._inside[key] += 1
            try:
                return fn(*args)
            finally:
                with self._inside_changed:
                    self._inside[key] -= 1
                    self._inside_changed.notify_all()

        return run


async def _drain(future: Awaitable[Any]) -> None:
    with contextlib.suppress(BaseException):
        await asyncio.shield(future)
