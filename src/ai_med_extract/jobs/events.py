"""The event stream of each job: read from the database, woken across processes.

Events are ``progress`` {stage, percent, message}, ``token`` {text} (streamed generation),
and the terminal ``complete`` {status, ...} or ``error`` {code, message}. Payloads are encrypted at
rest like every other job datum; ``message`` texts are written to be PHI-free anyway. The job
repository writes them; this module reads them and wakes waiting streams.

On PostgreSQL every write sends a notification (``pg_notify``) that each process receives through
one listening connection (asyncpg ``add_listener``), so a stream on one API replica wakes as soon as a
worker anywhere writes; cancel requests travel the same way to the worker that runs the job. On
SQLite (one process) the writers announce in process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ai_med_extract.db.models import JobEvent
from ai_med_extract.jobs.repository import CANCEL_CHANNEL, EVENTS_CHANNEL
from ai_med_extract.observability.logs import log_exception
from ai_med_extract.storage.cipher import Cipher

logger = logging.getLogger(__name__)

TERMINAL_EVENTS = frozenset({"complete", "error"})


@dataclass(frozen=True)
class StoredEvent:
    seq: int
    event: str
    data: dict[str, Any]


def libpq_url(sqlalchemy_url: str) -> str:
    """``postgresql+asyncpg://...`` as a plain ``postgresql://...`` URL for asyncpg or psycopg."""
    return make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(hide_password=False)


class JobEvents:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], cipher: Cipher):
        self._sessionmaker = sessionmaker
        self._cipher = cipher
        self._versions: dict[str, int] = defaultdict(int)
        self._changed = asyncio.Condition()
        self._cancel_listeners: list[Callable[[str], None]] = []
        self._connection: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- cross-process wake-ups --------------------------------------------------------------
    async def listen(self, database_url: str) -> None:
        """Receive other processes' notifications (PostgreSQL only; a no-op on SQLite)."""
        if not database_url.startswith("postgresql"):
            return
        import asyncpg

        self._loop = asyncio.get_running_loop()
        self._connection = await asyncpg.connect(libpq_url(database_url))
        await self._connection.add_listener(EVENTS_CHANNEL, self._on_notification)
        await self._connection.add_listener(CANCEL_CHANNEL, self._on_notification)

    async def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
            self._connection = None

    @property
    def listening(self) -> bool:
        return self._connection is not None and not self._connection.is_closed()

    def _on_notification(self, _conn: Any, _pid: int, channel: str, payload: str) -> None:
        if channel == CANCEL_CHANNEL:
            self._cancelled(payload)
        task = asyncio.ensure_future(self.announce(payload))
        task.add_done_callback(_log_failure)

    def on_cancel(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(job_id)`` whenever a cancel is requested (in this process or another)."""
        self._cancel_listeners.append(listener)

    def cancel_requested(self, job_id: str) -> None:
        """A cancel was committed in this process (other processes hear it by notification)."""
        self._cancelled(job_id)

    def _cancelled(self, job_id: str) -> None:
        for listener in self._cancel_listeners:
            try:
                listener(job_id)
            except Exception as exc:
                log_exception(logger, "cancel listener failed", exc)

    # -- in-process wake-ups -----------------------------------------------------------------
    async def announce(self, job_id: str) -> None:
        async with self._changed:
            self._versions[job_id] += 1
            self._changed.notify_all()

    def forget(self, job_id: str) -> None:
        self._versions.pop(job_id, None)

    async def wait(self, job_id: str, seen_version: int, timeout: float) -> int:
        """Wait until something is announced for the job (or the timeout); return the version."""
        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self._versions[job_id] != seen_version), timeout
                )
            except TimeoutError:
                pass
            return self._versions[job_id]

    def version(self, job_id: str) -> int:
        return self._versions[job_id]

    # -- reading -----------------------------------------------------------------------------
    async def read_after(self, job_id: str, after_seq: int, limit: int = 500) -> list[StoredEvent]:
        async with self._sessionmaker() as session:
            rows = (
                await session.execute(
                    select(JobEvent.seq, JobEvent.event, JobEvent.data_enc)
                    .where(JobEvent.job_id == job_id, JobEvent.seq > after_seq)
                    .order_by(JobEvent.seq)
                    .limit(limit)
                )
            ).all()
        return [StoredEvent(seq, event, self._cipher.decrypt_json(data)) for seq, event, data in rows]


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log_exception(logger, "event announcement failed", task.exception())  # type: ignore[arg-type]
