"""Writing and verifying the audit trail.

Each row stores ``row_hash = HMAC(chain key, prev_hash || canonical(row))``, where ``prev_hash`` is the
previous row's ``row_hash``, and the id of the chain key that signed it (``key_id``, part of the
hashed content; ``security/keyring.py``). After ``keys rotate --purpose audit`` new rows are signed
with the new key and link to the last row signed with the old one, so the chain runs on across the
rotation and both segments verify, each with its own key. Editing a row breaks its own hash; deleting one breaks the next row's
link. Writers are serialised until commit (a PostgreSQL transaction-level advisory lock; SQLite's
``BEGIN IMMEDIATE``), so the chain never forks and a rolled-back row leaves no gap.

``request_data`` must hold metadata only (sizes, counts, types, ids), never document content.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from ai_med_extract.db.base import as_utc, utcnow
from ai_med_extract.db.tables import AuditLog
from ai_med_extract.security.keyring import Key, Keyring, Purpose, hmac_hex

GENESIS = "0" * 64
_ADVISORY_LOCK_KEY = 0x41554454  # "AUDT"
_HASHED_FIELDS = (
    "id",
    "timestamp",
    "user_id",
    "action",
    "resource_type",
    "resource_id",
    "phi_accessed",
    "ip_address",
    "user_agent",
    "request_data",
    "response_status",
    "error_message",
)


def _canonical_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return as_utc(value).replace(tzinfo=None).isoformat(timespec="microseconds")
    if value is None or isinstance(value, bool | int | float | str | dict | list):
        return value
    return str(value)  # INET comes back as an ipaddress object from asyncpg


def row_digest(key: Key, prev_hash: str, row: AuditLog) -> str:
    body = {name: _canonical_value(getattr(row, name)) for name in _HASHED_FIELDS}
    if row.key_id is not None:  # rows from before key ids hash as they always did
        body["key_id"] = row.key_id
    payload = prev_hash + json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hmac_hex(key, payload.encode())


@dataclass(frozen=True)
class AuditEntry:
    action: str
    resource_type: str | None = None
    resource_id: str | None = None
    phi_accessed: bool = False
    user_id: str | None = None
    ip_address: str | None = None
    user_agent: str | None = None
    request_data: dict[str, Any] | None = None
    response_status: int | None = None
    error_message: str | None = None


class AuditTrail:
    def __init__(self, keyring: Keyring):
        self._keyring = keyring

    async def append(self, session: AsyncSession, entry: AuditEntry) -> AuditLog:
        """Add a row inside the caller's transaction; it commits or rolls back with the action."""
        bind = session.get_bind()
        if bind.dialect.name == "postgresql":
            await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADVISORY_LOCK_KEY})
        last = (
            await session.execute(select(AuditLog.id, AuditLog.row_hash).order_by(AuditLog.id.desc()).limit(1))
        ).first()
        prev_hash = last.row_hash if last else GENESIS
        now = utcnow()
        row = AuditLog(
            # Ids are assigned here, under the writer lock, because the id is part of the hashed
            # content and the append-only trigger forbids setting the hash after the insert.
            id=(last.id + 1) if last else 1,
            timestamp=now,
            created_at=now,
            user_id=entry.user_id,
            action=entry.action,
            resource_type=entry.resource_type,
            resource_id=entry.resource_id,
            phi_accessed=entry.phi_accessed,
            ip_address=entry.ip_address,
            user_agent=(entry.user_agent or "")[:512] or None,
            request_data=entry.request_data,
            response_status=entry.response_status,
            error_message=entry.error_message,
            prev_hash=prev_hash,
            row_hash="",
        )
        key = self._keyring.current(Purpose.audit_chain)
        row.key_id = key.kid
        row.row_hash = row_digest(key, prev_hash, row)
        session.add(row)
        await session.flush()
        return row


@dataclass(frozen=True)
class VerifyProblem:
    row_id: int
    reason: str


@dataclass(frozen=True)
class VerifyReport:
    rows_checked: int
    problems: tuple[VerifyProblem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


async def _rows(session: AsyncSession, batch: int = 1000) -> AsyncIterator[AuditLog]:
    last_id = 0
    while True:
        rows = (
            (
                await session.execute(
                    select(AuditLog).where(AuditLog.id > last_id).order_by(AuditLog.id).limit(batch)
                )
            )
            .scalars()
            .all()
        )
        if not rows:
            return
        for row in rows:
            yield row
        last_id = rows[-1].id


async def verify_chain(session: AsyncSession, keyring: Keyring, checkpoint: Any = None) -> VerifyReport:
    """Walk the whole trail; report each row whose content or link does not check out.

    With a ``checkpoint`` (``audit.checkpoint.Checkpoint``), also report rows missing up to it: a
    cut tail (the last rows, or all of them, deleted) breaks no link, but the checkpoint remembers
    how many rows there were and the hash of the last one."""
    problems: list[VerifyProblem] = []
    expected_prev = GENESIS
    count = 0
    previous_id: int | None = None
    upto_checkpoint = 0
    head_seen = False
    async for row in _rows(session):
        count += 1
        if row.prev_hash != expected_prev:
            where = f"after row {previous_id}" if previous_id is not None else "at the start"
            problems.append(
                VerifyProblem(row.id, f"chain broken {where}: a row was deleted or edited before this one")
            )
        keys = keyring.candidates(Purpose.audit_chain, row.key_id)
        if not keys:
            problems.append(VerifyProblem(row.id, "signed with a key this server does not know"))
        elif not any(hmac.compare_digest(row_digest(key, row.prev_hash, row), row.row_hash) for key in keys):
            problems.append(VerifyProblem(row.id, "content does not match its hash: the row was edited"))
        if checkpoint is not None and row.id <= checkpoint.last_id:
            upto_checkpoint += 1
            if row.id == checkpoint.last_id:
                head_seen = True
                if row.row_hash != checkpoint.head_hash:
                    problems.append(VerifyProblem(row.id, "differs from the checkpointed head of the chain"))
        expected_prev = row.row_hash
        previous_id = row.id
    if checkpoint is not None and checkpoint.rows:
        if not head_seen:
            problems.append(VerifyProblem(
                checkpoint.last_id,
                f"the checkpoint of {checkpoint.at} ends at row {checkpoint.last_id}, which is gone: "
                "the tail of the trail was cut",
            ))
        elif upto_checkpoint != checkpoint.rows:
            problems.append(VerifyProblem(
                checkpoint.last_id,
                f"{checkpoint.rows - upto_checkpoint} row(s) up to the checkpoint of {checkpoint.at} are missing",
            ))
    return VerifyReport(rows_checked=count, problems=tuple(problems))
