"""The event stream of each job: persisted (so a client can resume) and announced in process.

Events are ``progress`` {stage, percent, message}, ``token`` {text} (streamed generation),
and the terminal ``complete`` {status, ...} or ``error`` {code, message}. Payloads are encrypted at
rest like every other job datum; ``message`` texts are written to be PHI-free anyway.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ai_med_extract.db.models import Job, JobEvent
from ai_med_extract.storage.cipher import Cipher

TERMINAL_EVENTS = frozenset({"complete", "error"})


@dataclass(frozen=True)
class StoredEvent:
    seq: int
    event: str
    data: dict[str, Any]


class JobEvents:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], cipher: Cipher):
        self._sessionmaker = sessionmaker
        self._cipher = cipher
        self._versions: dict[str, int] = defaultdict(int)
        self._changed = asyncio.Condition()
        # One writer at a time per job: sequence numbers are max + 1 inside the transaction.
        self._writers: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def append(
        self, session: AsyncSession, job_id: str, event: str, data: dict[str, Any]
    ) -> int:
        """Add an event inside the caller's transaction; call ``announce`` after commit."""
        last = (
            await session.execute(select(func.max(JobEvent.seq)).where(JobEvent.job_id == job_id))
        ).scalar_one_or_none()
        seq = (last or 0) + 1
        session.add(JobEvent(job_id=job_id, seq=seq, event=event, data_enc=self._cipher.encrypt_json(data)))
        await session.flush()
        return seq

    async def publish(self, job_id: str, event: str, data: dict[str, Any], **job_fields: Any) -> int:
        """Append an event (and update job columns) in its own transaction, then announce it.

        Safe to call concurrently for one job (e.g. progress and streamed tokens at once)."""
        async with self._writers[job_id], self._sessionmaker() as session, session.begin():
            seq = await self.append(session, job_id, event, data)
            if job_fields:
                job = await session.get(Job, job_id)
                if job is not None:
                    for name, value in job_fields.items():
                        setattr(job, name, value)
        await self.announce(job_id)
        return seq

    async def announce(self, job_id: str) -> None:
        async with self._changed:
            self._versions[job_id] += 1
            self._changed.notify_all()

    def writer_lock(self, job_id: str) -> asyncio.Lock:
        return self._writers[job_id]

    def forget_writer(self, job_id: str) -> None:
        self._writers.pop(job_id, None)

    def forget(self, job_id: str) -> None:
        self._versions.pop(job_id, None)
        self._writers.pop(job_id, None)

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
