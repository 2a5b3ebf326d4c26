"""Signed checkpoints of the audit chain's head, kept where the database role cannot reach.

A checkpoint is one JSON line ``{rows, last_id, head_hash, at, signature}`` with
``signature = HMAC(checkpoint key, the other fields)``, appended to ``checkpoints.jsonl`` in the
configured directory (opened append-only, mode 0600, fsync'd), and optionally sent to syslog. The
service writes one at least every minute and at shutdown; ``ai-med-extract audit checkpoint``
writes one on demand. ``audit verify`` then checks the chain against the last checkpoint: deleting
the last rows of the table, or all of them, no longer leaves a chain that verifies.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import logging.handlers
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ai_med_extract.db.base import utcnow
from ai_med_extract.db.models import AuditLog
from ai_med_extract.security.keyring import Purpose, derive

logger = logging.getLogger(__name__)
FILE_NAME = "checkpoints.jsonl"


@dataclass(frozen=True)
class Checkpoint:
    rows: int
    last_id: int
    head_hash: str
    at: str

    def payload(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()


class CheckpointLog:
    def __init__(self, directory: Path, secret: bytes, *, syslog_address: str | None = None):
        self.directory = directory
        self.path = directory / FILE_NAME
        self._key = derive(secret, Purpose.audit_checkpoint)
        self._syslog_address = syslog_address

    def sign(self, checkpoint: Checkpoint) -> str:
        return hmac.new(self._key, checkpoint.payload(), hashlib.sha256).hexdigest()

    def append(self, checkpoint: Checkpoint) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        line = json.dumps({**asdict(checkpoint), "signature": self.sign(checkpoint)}, sort_keys=True) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        if self._syslog_address:
            self._to_syslog(line.strip())

    def _to_syslog(self, line: str) -> None:
        host, _, port = self._syslog_address.partition(":") if self._syslog_address else ("", "", "")
        address: str | tuple[str, int] = (host, int(port)) if port else host
        handler = logging.handlers.SysLogHandler(address=address)
        try:
            handler.emit(logging.LogRecord("ai_med_extract.audit", logging.INFO, __file__, 0,
                                           "audit-checkpoint %s", (line,), None))
        finally:
            handler.close()

    def last(self) -> tuple[Checkpoint | None, list[str]]:
        """The newest checkpoint whose signature holds, and a problem for each line that does not."""
        if not self.path.exists():
            return None, []
        problems: list[str] = []
        found: Checkpoint | None = None
        for number, raw in enumerate(self.path.read_text().splitlines(), start=1):
            try:
                data = json.loads(raw)
                signature = data.pop("signature")
                checkpoint = Checkpoint(**data)
            except (ValueError, TypeError, KeyError):
                problems.append(f"checkpoint line {number} is not a checkpoint")
                continue
            if not hmac.compare_digest(signature, self.sign(checkpoint)):
                problems.append(f"checkpoint line {number} has a bad signature")
                continue
            if found is not None and checkpoint.rows < found.rows:
                problems.append(f"checkpoint line {number} counts fewer rows than the one before it")
            found = checkpoint
        return found, problems


async def chain_head(session: AsyncSession) -> Checkpoint:
    """The chain's head now: the last row and the number of rows up to it."""
    last = (await session.execute(select(AuditLog.id, AuditLog.row_hash).order_by(AuditLog.id.desc()).limit(1))).first()
    if last is None:
        return Checkpoint(rows=0, last_id=0, head_hash="0" * 64, at=utcnow().isoformat())
    rows = (await session.execute(select(func.count()).select_from(AuditLog).where(AuditLog.id <= last.id))).scalar_one()
    return Checkpoint(rows=int(rows), last_id=int(last.id), head_hash=last.row_hash, at=utcnow().isoformat())


async def write_checkpoint(session: AsyncSession, log: CheckpointLog) -> Checkpoint:
    checkpoint = await chain_head(session)
    log.append(checkpoint)
    return checkpoint
