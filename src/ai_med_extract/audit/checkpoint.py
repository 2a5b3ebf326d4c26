"""Signed checkpoints of the audit chain's head, kept where the database role cannot reach.

A checkpoint is one JSON line ``{rows, last_id, head_hash, at, key_id, signature}`` with
``signature = HMAC(checkpoint key, the other fields)`` (``key_id`` names the checkpoint key; lines
written before key ids existed have none and were signed with derived version 1), appended to ``checkpoints.jsonl`` in the
configured directory (opened append-only, mode 0600, fsync'd), and optionally sent to syslog. The
service writes one at least every minute and at shutdown; ``ai-med-extract audit checkpoint``
writes one on demand. ``audit verify`` then checks the chain against the last checkpoint: deleting
the last rows of the table, or all of them, no longer leaves a chain that verifies.
"""

from __future__ import annotations

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
from ai_med_extract.db.tables import AuditLog
from ai_med_extract.security.keyring import Key, Keyring, Purpose, hmac_hex

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


def _signature(key: Key, checkpoint: Checkpoint) -> str:
    payload = checkpoint.payload()
    if key.kid is not None:
        payload += b"|" + key.kid.encode()
    return hmac_hex(key, payload)


class CheckpointLog:
    def __init__(self, directory: Path, keyring: Keyring, *, syslog_address: str | None = None):
        self.directory = directory
        self.path = directory / FILE_NAME
        self._keyring = keyring
        self._syslog_address = syslog_address

    def sign(self, checkpoint: Checkpoint) -> tuple[str | None, str]:
        """The current checkpoint key's id and its signature of ``checkpoint``."""
        key = self._keyring.current(Purpose.audit_checkpoint)
        return key.kid, _signature(key, checkpoint)

    def append(self, checkpoint: Checkpoint) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        key_id, signature = self.sign(checkpoint)
        line = json.dumps({**asdict(checkpoint), "key_id": key_id, "signature": signature}, sort_keys=True) + "\n"
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
                signature = str(data.pop("signature"))
                key_id = data.pop("key_id", None)
                checkpoint = Checkpoint(**data)
            except (ValueError, TypeError, KeyError, AttributeError):
                problems.append(f"checkpoint line {number} is not a checkpoint")
                continue
            keys = self._keyring.candidates(Purpose.audit_checkpoint, key_id if isinstance(key_id, str) else None)
            if not any(hmac.compare_digest(signature, _signature(key, checkpoint)) for key in keys):
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
