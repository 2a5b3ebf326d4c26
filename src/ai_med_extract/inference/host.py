"""A text backend hosted in a child process, so that a native crash fails one call, not the service.

llama.cpp is C++: a fault inside it (a bad pointer, an abort) kills the whole interpreter and every
job in it. :class:`HostedBackend` runs the real backend in a process of its own (``spawn``, so no
threads or locks are inherited) and speaks to it over a pipe:

- requests go down as ``(op, ...)`` tuples; answers come back as ``("ok", value)``,
  ``("error", PortableError)``, or, for a stream, ``("piece", text)`` messages then ``("done", ...)``;
- a stream is flow-controlled: the child runs at most ``STREAM_WINDOW`` pieces ahead of the reader,
  and a cancel message stops it at the next token (the child checks the pipe between tokens);
- when the child dies (a signal, an abort, the OOM killer) the call in flight raises
  :class:`~ai_med_extract.inference.errors.InferenceCrashed` and the next call starts a fresh child
  and loads the model again;
- a child that does not stop within ``CANCEL_GRACE_S`` of a cancel (a long prompt evaluation) is
  killed, which makes the pool's time limit a hard one.

One call at a time goes to the child (a lock): the backend contract is single-threaded, and token
counts asked while a stream runs wait for it.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from ai_med_extract.errors import AppError
from ai_med_extract.inference.backends.base import Completion, GenerationCancelled, LoadContext, TextBackend
from ai_med_extract.inference.errors import GenerationFailed, InferenceCrashed, ModelLoadFailed
from ai_med_extract.inference.types import GenerationRequest

logger = logging.getLogger(__name__)

STREAM_WINDOW = 16  # pieces the child may send before the reader has taken them
CANCEL_GRACE_S = 15.0  # after a cancel, how long the child may take to stop before it is killed
POLL_S = 0.05
START_TIMEOUT_S = 600.0  # process start plus model load


@dataclass(frozen=True, slots=True)
class PortableError:
    """An exception raised in the child, as data: its class (to rebuild the product's own errors with
    their codes) and, for those only, message and details. Other exceptions travel as their type name."""

    module: str
    name: str
    app_error: bool
    message: str = ""
    code: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, exc: BaseException) -> PortableError:
        kind = type(exc)
        if isinstance(exc, AppError):
            return cls(kind.__module__, kind.__qualname__, True, exc.message, exc.code, dict(exc.details))
        return cls(kind.__module__, kind.__qualname__, False)

    def rebuild(self) -> BaseException:
        if (self.module, self.name) == (GenerationCancelled.__module__, GenerationCancelled.__qualname__):
            return GenerationCancelled()
        if self.app_error:
            try:
                kind = getattr(importlib.import_module(self.module), self.name)
            except (ImportError, AttributeError):
                kind = None
            if isinstance(kind, type) and issubclass(kind, AppError):
                error = kind.__new__(kind)
                AppError.__init__(error, self.message, details=self.details, code=self.code)
                return error
            return GenerationFailed(self.message, details=self.details, code=self.code)
        return GenerationFailed(f"the model failed ({self.name})")


def _serve(conn: Connection, module: str, class_name: str, ctx: LoadContext) -> None:
    """The child's main loop: load the backend, answer calls until told to close or the pipe ends."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    backend: TextBackend | None = None
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            break
        op = message[0]
        try:
            if op == "load":
                cls = getattr(importlib.import_module(module), class_name)
                backend = cls(ctx)
                backend.load()
                conn.send(("ok", {"device": backend.device, "memory_bytes": backend.memory_bytes(),
                                  "context_window": backend.context_window(), "info": backend.info()}))
            elif op == "call":
                assert backend is not None
                conn.send(("ok", getattr(backend, message[1])(*message[2])))
            elif op == "stream":
                assert backend is not None
                _stream(conn, backend, message[1], message[2])
            elif op == "close":
                if backend is not None:
                    backend.unload()
                conn.send(("ok", None))
                break
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the caller as data
            conn.send(("error", PortableError.of(exc)))
    conn.close()


def _stream(conn: Connection, backend: TextBackend, req: GenerationRequest, window: int) -> None:
    cancel = threading.Event()
    credit = window

    def control(block: bool) -> None:
        nonlocal credit
        while block or conn.poll():
            kind = conn.recv()[0]
            if kind == "ack":
                credit += 1
            elif kind == "cancel":
                cancel.set()
            block = False

    for piece in backend.stream(req, cancel):
        conn.send(("piece", piece))
        credit -= 1
        control(block=False)
        while credit <= 0 and not cancel.is_set():
            control(block=True)
    last = backend.last
    conn.send(("done", Completion(last.text, last.prompt_tokens, last.completion_tokens, last.finish_reason)))


class HostedBackend(TextBackend):
    """``inner``'s backend class run in a child process; see the module docstring."""

    def __init__(self, inner: type[TextBackend], ctx: LoadContext):
        super().__init__(ctx)
        self.kind = inner.kind  # type: ignore[misc]
        self.supports_json_schema = inner.supports_json_schema  # type: ignore[misc]
        self._inner = inner
        self._lock = threading.Lock()
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None
        self._loaded: dict[str, Any] = {}
        self._cancelled_at: float | None = None
        self.restarts = 0

    # ------------------------------------------------------------------ lifecycle

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        process = self._process
        return process.pid if process is not None and process.is_alive() else None

    def load(self) -> None:
        with self._lock:
            self._start()

    def _start(self) -> None:
        spawn = multiprocessing.get_context("spawn")
        parent, child = spawn.Pipe(duplex=True)
        process = spawn.Process(
            target=_serve,
            args=(child, self._inner.__module__, self._inner.__name__, self.ctx),
            name=f"inference-host-{self.entry.name}",
            daemon=True,
        )
        process.start()
        child.close()  # the child's end lives in the child only: its death reads as end of file here
        self._process, self._conn = process, parent
        try:
            self._send(parent, ("load",))
            self._loaded = self._answer(deadline=time.monotonic() + START_TIMEOUT_S)
        except InferenceCrashed as exc:
            raise ModelLoadFailed(
                f"model {self.entry.name!r}: the inference host stopped while loading it",
                details={"model": self.entry.name, **exc.details},
            ) from None
        except BaseException:
            self._stop()
            raise
        self.device = str(self._loaded["device"])
        logger.info("inference host started", extra={"model": self.entry.name, "restarts": self.restarts})

    def _ready(self) -> Connection:
        """The pipe to a live child, starting (and loading) a new one if the last one died."""
        if self._process is None or not self._process.is_alive():
            if self._process is not None:
                self._reap()
            self.restarts += 1
            self._start()
        assert self._conn is not None
        return self._conn

    def _reap(self) -> int | None:
        process, conn = self._process, self._conn
        self._process, self._conn = None, None
        if conn is not None:
            conn.close()
        if process is None:
            return None
        process.join(timeout=5)
        if process.is_alive():
            process.kill()
            process.join(timeout=5)
        return process.exitcode

    def _stop(self) -> None:
        """Kill the child now (it is hung, or its pipe is out of step)."""
        if self._process is not None and self._process.is_alive():
            self._process.kill()
        self._reap()

    def _crashed(self) -> InferenceCrashed:
        exit_code = self._reap()
        details: dict[str, Any] = {"model": self.entry.name, "exit_code": exit_code}
        if exit_code is not None and exit_code < 0:
            details["signal"] = signal.Signals(-exit_code).name
        logger.error("inference host crashed", extra=details)
        return InferenceCrashed(
            f"the inference process of model {self.entry.name!r} stopped unexpectedly; it restarts on the next request",
            details=details,
        )

    def unload(self) -> None:
        with self._lock:
            conn = self._conn
            if conn is not None and self._process is not None and self._process.is_alive():
                try:
                    conn.send(("close",))
                    self._answer(deadline=time.monotonic() + 30)
                except BaseException as exc:  # noqa: BLE001 - a child that will not close is killed
                    logger.warning("inference host did not close cleanly", extra={"error_type": type(exc).__name__})
            self._stop()

    # ------------------------------------------------------------------ the pipe

    def _send(self, conn: Connection, message: tuple[Any, ...]) -> None:
        try:
            conn.send(message)
        except OSError:  # the child is gone
            raise self._crashed() from None

    def _receive(self, conn: Connection, deadline: float | None = None,
                 cancel: threading.Event | None = None) -> tuple[Any, ...]:
        """The next message from the child. Raises InferenceCrashed if it dies; sends a cancel once
        ``cancel`` is set and kills the child if it has not finished ``CANCEL_GRACE_S`` later."""
        while True:
            now = time.monotonic()
            if cancel is not None and cancel.is_set():
                if self._cancelled_at is None:
                    self._cancelled_at = now
                    self._send(conn, ("cancel",))
                elif now - self._cancelled_at > CANCEL_GRACE_S:
                    logger.warning("inference host ignored a cancel; killing it", extra={"model": self.entry.name})
                    self._stop()
                    raise GenerationCancelled
            if deadline is not None and now > deadline:
                self._stop()
                raise ModelLoadFailed(f"model {self.entry.name!r}: the inference host did not answer in time",
                                      details={"model": self.entry.name})
            try:
                if conn.poll(POLL_S):
                    message: tuple[Any, ...] = conn.recv()
                    return message
            except (EOFError, OSError):
                raise self._crashed() from None
            if self._process is None or not self._process.is_alive():
                raise self._crashed()

    def _answer(self, deadline: float | None = None) -> Any:
        assert self._conn is not None
        message = self._receive(self._conn, deadline)
        if message[0] == "error":
            raise message[1].rebuild()
        return message[1]

    def _call(self, name: str, *args: Any) -> Any:
        with self._lock:
            conn = self._ready()
            self._send(conn, ("call", name, args))
            return self._answer()

    # ------------------------------------------------------------------ the backend contract

    def memory_bytes(self) -> int | None:
        value = self._loaded.get("memory_bytes")
        return int(value) if value is not None else None

    def info(self) -> dict[str, object]:
        return {**self._loaded.get("info", {"device": self.device}), "isolated": True, "host_pid": self.pid,
                "host_restarts": self.restarts}

    def count_tokens(self, text: str) -> int:
        return int(self._call("count_tokens", text))

    def prompt_tokens(self, req: GenerationRequest) -> int:
        return int(self._call("prompt_tokens", req))

    def context_window(self) -> int:
        return int(self._loaded.get("context_window") or self._call("context_window"))

    def stream(self, req: GenerationRequest, cancel: threading.Event) -> Iterator[str]:
        with self._lock:
            conn = self._ready()
            self._send(conn, ("stream", req, STREAM_WINDOW))
            self._cancelled_at = None
            finished = False
            try:
                while True:
                    message = self._receive(conn, cancel=cancel)
                    if message[0] == "piece":
                        yield message[1]
                        self._send(conn, ("ack",))
                    elif message[0] == "done":
                        finished = True
                        self.last = message[1]
                        return
                    else:
                        finished = True
                        raise message[1].rebuild()
            except (InferenceCrashed, GenerationCancelled):
                finished = True
                raise
            finally:
                if not finished:  # the reader went away mid-stream: stop the child, keep the pipe in step
                    self._abandon(conn)

    def _abandon(self, conn: Connection) -> None:
        stop = threading.Event()
        stop.set()
        try:
            while True:
                message = self._receive(conn, cancel=stop)
                if message[0] in ("done", "error"):
                    return
                self._send(conn, ("ack",))
        except BaseException:  # noqa: BLE001 - dead or killed: the next call starts a fresh child
            self._stop()
