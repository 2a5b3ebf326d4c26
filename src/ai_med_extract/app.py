"""The composition root: ``create_app()`` and its lifespan build every collaborator once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from ai_med_extract import __version__
from ai_med_extract.api.errors import install_error_handlers
from ai_med_extract.api.gate import AuthGate
from ai_med_extract.api.middleware import ServiceMiddleware
from ai_med_extract.api.openapi import install_docs
from ai_med_extract.api.router import api_router
from ai_med_extract.audit.checkpoint import CheckpointLog, write_checkpoint
from ai_med_extract.audit.refusals import RefusalSampler
from ai_med_extract.audit.trail import AuditTrail
from ai_med_extract.config import JobEngine, Settings
from ai_med_extract.db.engine import create_engine, create_sessionmaker
from ai_med_extract.db.medical import MedicalRecordRepository
from ai_med_extract.db.phi import PhiMappingRepository
from ai_med_extract.jobs.events import JobEvents
from ai_med_extract.jobs.executor import JobExecutor, JobHandler, worker_name
from ai_med_extract.jobs.repository import JobRepository
from ai_med_extract.jobs.runner import InProcessJobRunner, JobRunner
from ai_med_extract.jobs.service import JobService
from ai_med_extract.observability.logs import configure_logging, log_exception
from ai_med_extract.security.keyring import Keyring, Purpose, load_keyring
from ai_med_extract.security.keys import KeyService
from ai_med_extract.security.ratelimit import RateLimiter
from ai_med_extract.services import Agents, Services
from ai_med_extract.storage.cipher import Cipher
from ai_med_extract.storage.files import FileStore
from ai_med_extract.storage.secrets import load_secrets

logger = logging.getLogger(__name__)


def build_agents(settings: Settings, keyring: Keyring | None = None) -> Agents:
    """The agents and the model pool. Each is built once; heavy libraries load lazily inside them.
    ``keyring`` (loaded from the database) gives the PHI key; without one, version 1 of it."""
    from ai_med_extract.agents.medical.extractor import MedicalExtractor
    from ai_med_extract.agents.medical.llm import LLMCandidateSource
    from ai_med_extract.agents.phi.agent import PhiAgent
    from ai_med_extract.agents.summary.agent import PatientSummaryAgent
    from ai_med_extract.agents.text import TextExtractionAgent
    from ai_med_extract.inference.pool import ModelPool

    keyring = keyring or Keyring.from_settings(settings, load_secrets(settings).secret_key)
    phi_key = keyring.current(Purpose.phi)
    pool = ModelPool.from_settings(settings)
    medical = MedicalExtractor(llm=LLMCandidateSource(pool))
    return Agents(
        pool=pool,
        text=TextExtractionAgent(settings.extraction, max_bytes=settings.upload.max_bytes, transcriber=pool),
        phi=PhiAgent.from_settings(phi_key.secret, settings.phi, key_id=phi_key.kid),
        medical=medical,
        # the summary agent reads notes with the medical extractor
        summary=PatientSummaryAgent(pool, settings.summary, reader=medical),
    )


async def _sweep_patient_tables(services: Services) -> dict[str, int]:
    """Medical records (with their versions) and PHI mappings past the retention period."""
    from datetime import timedelta

    from ai_med_extract.db.base import utcnow

    cutoff = utcnow() - timedelta(hours=services.settings.storage.retention_hours)
    async with services.sessionmaker() as session, session.begin():
        records = await services.medical_records.delete_older_than(session, cutoff)
        mappings = await services.phi_mappings.delete_older_than(session, cutoff)
    return {"medical_records": records, "phi_mappings": mappings}


async def _retention_sweep(services: Services) -> None:
    interval = services.settings.storage.sweep_interval_s
    while True:
        try:
            async with services.sessionmaker() as session, session.begin():
                expired = await services.jobs.expired(session, services.settings.storage.retention_hours)
                for job in expired:
                    await services.jobs.delete(session, job)
            if expired:
                logger.info("retention sweep removed jobs", extra={"count": len(expired)})
            removed = await _sweep_patient_tables(services)
            if any(removed.values()):
                logger.info("retention sweep removed records", extra=removed)
        except Exception as exc:
            log_exception(logger, "retention sweep failed", exc)
        await asyncio.sleep(interval)


async def _checkpoint(services: Services) -> None:
    if services.checkpoints is None:
        return
    try:
        async with services.sessionmaker() as session:
            await write_checkpoint(session, services.checkpoints)
    except Exception as exc:
        log_exception(logger, "audit checkpoint failed", exc)


async def _checkpoints(services: Services) -> None:
    while True:
        await asyncio.sleep(services.settings.audit.checkpoint_interval_s)
        await _checkpoint(services)


def build_handlers(settings: Settings, agents: Agents) -> dict[str, JobHandler]:
    """The job handlers by kind: the same in ``serve`` (embedded runner) and in ``worker``."""
    from ai_med_extract.agents.summary.job import SummaryJob
    from ai_med_extract.jobs.upload import build_upload_pipeline

    if agents.text is None:
        raise ValueError("the upload job needs the text agent")
    handlers: dict[str, JobHandler] = {"upload": build_upload_pipeline(agents.text, agents.phi, agents.medical)}
    if agents.summary is not None:
        handlers["summary"] = SummaryJob(agents.summary, settings.summary)
    return handlers


def build_runner(settings: Settings, repository: JobRepository, events: JobEvents, agents: Agents) -> JobRunner:
    """The embedded runner executes jobs here; the distributed engine only dispatches them."""
    if settings.jobs.engine is JobEngine.procrastinate:
        from ai_med_extract.jobs.engine import ProcrastinateRunner

        return ProcrastinateRunner(settings)  # its jobs run on workers
    executor = JobExecutor(
        settings=settings.jobs,
        repository=repository,
        events=events,
        handlers=build_handlers(settings, agents),
        owner=worker_name("serve"),
    )
    return InProcessJobRunner(settings=settings.jobs, repository=repository, events=events, executor=executor)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    secrets = load_secrets(settings)
    engine = create_engine(settings.database)
    sessionmaker = create_sessionmaker(engine)
    cipher = Cipher.from_secret(secrets.encryption_key)
    store = FileStore(settings.storage.directory, cipher)
    events = JobEvents(sessionmaker, cipher)
    repository = JobRepository(sessionmaker, cipher, store)
    async with sessionmaker() as session:
        keyring = await load_keyring(settings, session)
    agents = build_agents(settings, keyring)
    runner = build_runner(settings, repository, events, agents)
    services = Services(
        settings=settings,
        engine=engine,
        sessionmaker=sessionmaker,
        cipher=cipher,
        store=store,
        audit=AuditTrail(keyring),
        keys=KeyService(keyring),
        limiter=RateLimiter.from_settings(settings.security.rate_limit),
        events=events,
        jobs=JobService(
            repository, runner, events, settings.jobs,
            upload=settings.upload, media_type_of=agents.text.media_type if agents.text else None,
        ),
        runner=runner,
        agents=agents,
        medical_records=MedicalRecordRepository(cipher),
        phi_mappings=PhiMappingRepository(cipher),
        checkpoints=CheckpointLog(settings.checkpoint_dir, keyring,
                                  syslog_address=settings.audit.checkpoint_syslog),
        keyring=keyring,
    )
    app.state.services = services
    events.on_key_revoked(services.keys.forget)  # revoked by another process: forgotten here too
    await events.listen(settings.database.url)
    await runner.start()
    sweeper = asyncio.create_task(_retention_sweep(services), name="retention-sweep")
    checkpointer = asyncio.create_task(_checkpoints(services), name="audit-checkpoints")
    logger.info("service started", extra={"version": __version__, "environment": settings.environment.value})
    try:
        yield
    finally:
        for task in (sweeper, checkpointer):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await runner.stop()
        await _checkpoint(services)  # the head at shutdown, after the last job's rows
        await services.limiter.close()
        await events.close()
        await agents.close()
        await engine.dispose()
        logger.info("service stopped")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging(settings.logging)
    app = FastAPI(
        title="ai-med-extract",
        version=__version__,
        lifespan=lifespan,
        description="Self-hosted medical document AI. Every error answers "
        '`{"error": {"code", "message", "details"}}`; send the API key in the `X-API-Key` header.',
        docs_url=None,  # /docs and /redoc are served by install_docs from local assets (no CDN)
        redoc_url=None,
    )
    app.state.settings = settings
    install_error_handlers(app)
    if settings.security.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.security.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["X-API-Key", "Authorization", "Content-Type", "Last-Event-ID", "X-Request-ID"],
        )
    max_body = settings.upload.max_bytes * settings.upload.max_files + 1024 * 1024
    app.state.refusals = RefusalSampler()
    app.add_middleware(AuthGate)  # inside ServiceMiddleware: refused before the body is read
    app.add_middleware(
        ServiceMiddleware,
        max_body_bytes=max_body,
        max_file_bytes=settings.upload.max_bytes + 64 * 1024,  # a part's bytes include its trailing CRLF
        max_other_body_bytes=settings.summary.max_record_bytes + 1024 * 1024,
        hsts=settings.security.hsts,
    )
    app.include_router(api_router)
    install_docs(app)
    return app
