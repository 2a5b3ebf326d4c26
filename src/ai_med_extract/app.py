"""The composition root: ``create_app()`` and its lifespan build every collaborator once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from ai_med_extract import __version__
from ai_med_extract.agents.summary.job import build_summary_job
from ai_med_extract.api.errors import install_error_handlers
from ai_med_extract.api.middleware import ServiceMiddleware
from ai_med_extract.api.router import api_router
from ai_med_extract.audit.trail import AuditTrail
from ai_med_extract.config import JobEngine, Settings
from ai_med_extract.db.engine import create_engine, create_sessionmaker
from ai_med_extract.jobs.events import JobEvents
from ai_med_extract.jobs.executor import JobExecutor, JobHandler, worker_name
from ai_med_extract.jobs.pipeline import DocumentPipeline, Stage
from ai_med_extract.jobs.repository import JobRepository
from ai_med_extract.jobs.runner import InProcessJobRunner, JobRunner
from ai_med_extract.jobs.service import JobService
from ai_med_extract.observability.logs import configure_logging, log_exception
from ai_med_extract.security.keys import KeyService
from ai_med_extract.security.ratelimit import RateLimiter
from ai_med_extract.services import Services
from ai_med_extract.storage.cipher import Cipher
from ai_med_extract.storage.files import FileStore
from ai_med_extract.storage.secrets import load_secrets

logger = logging.getLogger(__name__)


def build_agents(settings: Settings) -> dict[str, Any]:
    """The agents and the model pool. Each is built once; heavy libraries load lazily inside them."""
    from ai_med_extract.agents.medical.extractor import MedicalExtractor
    from ai_med_extract.agents.medical.llm import LLMCandidateSource
    from ai_med_extract.agents.phi.agent import PhiAgent
    from ai_med_extract.agents.text import TextExtractionAgent
    from ai_med_extract.agents.text.stage import upload_validator
    from ai_med_extract.inference.pool import ModelPool

    pool = ModelPool.from_settings(settings)
    text = TextExtractionAgent(settings.extraction, max_bytes=settings.upload.max_bytes, transcriber=pool)
    return {
        "pool": pool,
        "text": text,
        "validate_upload": upload_validator(text),
        "phi": PhiAgent(load_secrets(settings).secret_key, ner=settings.phi.ner),
        "medical": MedicalExtractor(llm=LLMCandidateSource(pool)),
    }


def build_pipeline(agents: dict[str, Any]) -> DocumentPipeline:
    from ai_med_extract.agents.phi.agent import scrub_phi_stage
    from ai_med_extract.agents.text.stage import text_extraction_stage

    stages: list[Stage] = []
    stages.append(
        Stage("extract_text", text_extraction_stage(agents["text"], stage_count=lambda: len(stages)))
    )
    if "phi" in agents:
        stages.append(Stage("scrub_phi", scrub_phi_stage(agents["phi"])))
    if "medical" in agents:
        from ai_med_extract.agents.medical.stage import extract_medical_stage

        stages.append(Stage("extract_medical", extract_medical_stage(agents["medical"])))
    return DocumentPipeline(stages)


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
        except Exception as exc:
            log_exception(logger, "retention sweep failed", exc)
        await asyncio.sleep(interval)


def build_handlers(settings: Settings, agents: dict[str, Any]) -> dict[str, JobHandler]:
    """The job handlers by kind: the same in ``serve`` (embedded runner) and in ``worker``."""
    return {"upload": build_pipeline(agents), "summary": build_summary_job(settings, agents)}


def build_runner(
    settings: Settings, repository: JobRepository, events: JobEvents, agents: dict[str, Any]
) -> JobRunner:
    """The embedded runner executes jobs here; the distributed engine only dispatches them."""
    if settings.jobs.engine is JobEngine.procrastinate:
        from ai_med_extract.jobs.engine import ProcrastinateRunner

        build_summary_job(settings, agents)  # the summary routes need the agent; its jobs run on workers
        return ProcrastinateRunner(settings)
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
    agents = build_agents(settings)
    runner = build_runner(settings, repository, events, agents)
    services = Services(
        settings=settings,
        engine=engine,
        sessionmaker=sessionmaker,
        cipher=cipher,
        store=store,
        audit=AuditTrail(secrets.secret_key),
        keys=KeyService(secrets.secret_key),
        limiter=RateLimiter(settings.security.rate_limit),
        events=events,
        jobs=JobService(repository, runner, events, settings.jobs),
        runner=runner,
        agents=agents,
    )
    app.state.services = services
    await events.listen(settings.database.url)
    await runner.start()
    sweeper = asyncio.create_task(_retention_sweep(services), name="retention-sweep")
    logger.info("service started", extra={"version": __version__, "environment": settings.environment.value})
    try:
        yield
    finally:
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeper
        await runner.stop()
        await events.close()
        await close_agents(agents)
        await engine.dispose()
        logger.info("service stopped")


async def close_agents(agents: dict[str, Any]) -> None:
    for agent in agents.values():
        close = getattr(agent, "close", None)
        if close is not None:
            result = close()
            if asyncio.iscoroutine(result):
                await result


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging(settings.logging)
    app = FastAPI(
        title="ai-med-extract",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,  # Swagger UI loads assets from a CDN; the schema stays at /openapi.json
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
    app.add_middleware(ServiceMiddleware, max_body_bytes=max_body, hsts=settings.security.hsts)
    app.include_router(api_router)
    return app
