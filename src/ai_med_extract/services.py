"""The collaborators the app builds once and hands to routes (``app.state.services``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ai_med_extract.audit.checkpoint import CheckpointLog
from ai_med_extract.audit.trail import AuditTrail
from ai_med_extract.config import Settings
from ai_med_extract.db.medical import MedicalRecordRepository
from ai_med_extract.db.phi import PhiMappingRepository
from ai_med_extract.errors import ServiceUnavailable
from ai_med_extract.jobs.events import JobEvents
from ai_med_extract.jobs.runner import JobRunner
from ai_med_extract.jobs.service import JobService
from ai_med_extract.security.keyring import Keyring
from ai_med_extract.security.keys import KeyService
from ai_med_extract.security.ratelimit import RateLimiter
from ai_med_extract.storage.cipher import Cipher
from ai_med_extract.storage.files import FileStore

if TYPE_CHECKING:
    from ai_med_extract.agents.medical.extractor import MedicalExtractor
    from ai_med_extract.agents.phi.agent import PhiAgent
    from ai_med_extract.agents.summary.agent import PatientSummaryAgent
    from ai_med_extract.agents.text.agent import TextExtractionAgent
    from ai_med_extract.inference.pool import ModelPool

T = TypeVar("T")


def required(agent: T | None, *, code: str, what: str) -> T:
    """``agent``, or 503 ``code`` when this deployment has none."""
    if agent is None:
        raise ServiceUnavailable(f"{what} is not configured", code=code)
    return agent


@dataclass
class Agents:
    """The agents and the model pool, each built once (``app.build_agents``); ``None`` where this
    deployment has none. Heavy libraries load lazily inside them."""

    pool: ModelPool | None = None
    text: TextExtractionAgent | None = None
    phi: PhiAgent | None = None
    medical: MedicalExtractor | None = None
    summary: PatientSummaryAgent | None = None

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
        if self.text is not None:
            self.text.close()


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
    medical_records: MedicalRecordRepository
    phi_mappings: PhiMappingRepository
    agents: Agents = field(default_factory=Agents)
    checkpoints: CheckpointLog | None = None
    keyring: Keyring | None = None  # the per-purpose keys, as loaded at start (``keys rotate`` needs a restart)

    @property
    def pool(self) -> ModelPool | None:
        return self.agents.pool

    def text_agent(self) -> TextExtractionAgent:
        return required(self.agents.text, code="FORMAT_UNAVAILABLE", what="text extraction")

    def phi_agent(self) -> PhiAgent:
        return required(self.agents.phi, code="PHI_UNAVAILABLE", what="PHI scrubbing")

    def medical_agent(self) -> MedicalExtractor:
        return required(self.agents.medical, code="MEDICAL_UNAVAILABLE", what="medical extraction")
