"""The collaborators the app builds once and hands to routes (``app.state.services``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ai_med_extract.audit.checkpoint import CheckpointLog
from ai_med_extract.audit.trail import AuditTrail
from ai_med_extract.config import Settings
from ai_med_extract.errors import ServiceUnavailable
from ai_med_extract.jobs.events import JobEvents
from ai_med_extract.jobs.runner import JobRunner
from ai_med_extract.jobs.service import JobService
from ai_med_extract.security.keyring import Keyring
from ai_med_extract.security.keys import KeyService
from ai_med_extract.security.ratelimit import RateLimiter
from ai_med_extract.storage.cipher import Cipher
from ai_med_extract.storage.files import FileStore


@dataclass
class Services:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    cipher: Cipher
    store: FileStore
    audit: AuditTrail
    keys: KeyService
    limiter: RateLimiter
    events: JobEvents
    jobs: JobService
    runner: JobRunner
    # Agents and the model pool, keyed by name ("pool", "text", "phi", "medical", "summary").
    agents: dict[str, Any] = field(default_factory=dict)
    checkpoints: CheckpointLog | None = None
    keyring: Keyring | None = None  # the per-purpose keys, as loaded at start (``keys rotate`` needs a restart)

    @property
    def pool(self) -> Any:
        return self.agents.get("pool")

    def agent(self, name: str, *, code: str, what: str) -> Any:
        """The agent registered as ``name``, or 503 ``code`` when this deployment has none."""
        found = self.agents.get(name)
        if found is None:
            raise ServiceUnavailable(f"{what} is not configured", code=code)
        return found
