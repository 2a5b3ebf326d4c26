"""The event stream of each job: read from the database, woken across processes.

Events are ``progress`` {stage, percent, message}, ``token`` {text} (streamed generation),
and the terminal ``complete`` {status, ...} or ``error`` {code, message}. Payloads are encrypted at
rest like every other job datum; ``message`` texts are written to be PHI-free anyway. The job
repository writes them; this module reads them and wakes waiting streams.

On PostgreSQL every write sends a notification (``pg_notify``) that each process receives through
one listening connection (asyncpg ``add_listener``), so a stream on one API replica wakes as soon as a
worker anywhere writes; cancel requests and API-key revocations travel the same way. When that
connection drops (a database restart, a failover, an idle-connection reaper) the process connects
again at once, then at growing intervals while the database is away; what was sent meanwhile is
lost, so after a reconnect every stream is woken to read the database and every cached API key is
forgotten. A watchdog pings the connection, so one that died silently is replaced too. On SQLite
(one process) the writers announce in process.
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

from ai_med_extract.db.tables import JobEvent
from ai_med_extract.jobs.repository import CANCEL_CHANNEL, EVENTS_CHANNEL
from ai_med_extract.observability.logs import log_exception
from ai_med_extract.security.keys import KEYS_CHANNEL
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
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        cipher: Cipher,
        *,
        watchdog_s: float = 5.0,
        max_backoff_s: float = 5.0,
    ):
        self._sessionmaker = sessionmaker
        self._cipher = cipher
        self._versions: dict[str, int] = defaultdict(int)
        self._changed = asyncio.Condition()
        self._cancel_listeners: list[Callable[[str], None]] = []
        self._key_listeners: list[Callable[[int | None], None]] = []
        self._connection: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._url: str | None = None
        self._watchdog_s = watchdog_s
        self._max_backoff_s = max_backoff_s
        self._reconnecting = asyncio.Lock()
        self._closing = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self.reconnects = 0  # connections replaced after a drop (for tests and metrics)

    # -- cross-process wake-ups --------------------------------------------------------------
    async def listen(self, database_url: str) -> None:
        """Receive other processes' notifications (PostgreSQL only; a no-op on SQLite)."""
        if not database_url.startswith("postgresql"):
            return
        self._loop = asyncio.get_running_loop()
        self._url = libpq_url(database_url)
        self._closing = False
        await self._connect()
        self._spawn(self._watchdog(), "job-events-watchdog")

    async def _connect(self) -> None:
        import asyncpg

        assert self._url is not None
        connection = await asyncpg.connect(self._url)
        try:
            for channel in (EVENTS_CHANNEL, CANCEL_CHANNEL, KEYS_CHANNEL):
                await connection.add_listener(channel, self._on_notification)
        except BaseException:
            await connection.close()
            raise
        connection.add_termination_listener(self._on_terminated)
        self._connection = connection

    def _spawn(self, coroutine: Any, name: str) -> None:
        task = asyncio.ensure_future(coroutine)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_failure)

    def _on_terminated(self, connection: Any) -> None:
        if not self._closing and connection is self._connection:
            self._spawn(self._reconnect(connection), "job-events-reconnect")

    async def _reconnect(self, dropped: Any) -> None:
        """Replace ``dropped`` (unless another call already did), retrying until the database answers."""
        async with self._reconnecting:
            if self._closing or self._connection is not dropped:
                return
            self._connection = None
            with contextlib.suppress(Exception):
                dropped.terminate()
            delay = 0.05
            while not self._closing:
                try:
                    await self._connect()
                    break
                except Exception as exc:
                    log_exception(logger, "event listener could not reconnect; retrying", exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self._max_backoff_s)
            if self._closing:
                return
            # Notifications sent while the connection was away are lost: catch up from the database.
            self._key_revoked(None)
            await self.announce_all()
            self.reconnects += 1
        logger.warning("event listener reconnected", extra={"reconnects": self.reconnects})

    async def _watchdog(self) -> None:
        """Replace a connection that died without the socket saying so."""
        while not self._closing:
            await asyncio.sleep(self._watchdog_s)
            connection = self._connection
            if connection is None or self._reconnecting.locked():
                continue
            try:
                await asyncio.wait_for(connection.fetchval("SELECT 1"), timeout=self._watchdog_s)
            except Exception:
                await self._reconnect(connection)

    async def close(self) -> None:
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
            self._connection = None

    @property
    def listening(self) -> bool:
        return self._connection is not None and not self._connection.is_closed()

    def _on_notification(self, _conn: Any, _pid: int, channel: str, payload: str) -> None:
        if channel == KEYS_CHANNEL:
            self._key_revoked(int(payload) if payload.isdigit() else None)
            return
        if channel == CANCEL_CHANNEL:
            self._cancelled(payload)
        task = asyncio.ensure_future(self.announce(payload))
        task.add_done_callback(_log_failure)

    def on_key_revoked(self, listener: Callable[[int | None], None]) -> None:
        """Call ``listener(key_id)`` when any process revokes an API key; ``listener(None)`` when
        revocations may have been missed (the listening connection dropped)."""
        self._key_listeners.append(listener)

    def _key_revoked(self, key_id: int | None) -> None:
        for listener in self._key_listeners:
            try:
                listener(key_id)
            except Exception as exc:
                log_exception(logger, "key revocation listener failed", exc)

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

    async def announce_all(self) -> None:
        """Wake every waiting stream (each reads the database again)."""
        async with self._changed:
            for job_id in list(self._versions):
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
