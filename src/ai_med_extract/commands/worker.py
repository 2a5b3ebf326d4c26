"""`worker`: run jobs delivered by the distributed engine (``AME_JOBS__ENGINE=procrastinate``)."""

from __future__ import annotations

import asyncio

import typer

from ai_med_extract.config import JobEngine, Settings


async def run_worker(settings: Settings) -> None:
    """Build what a job needs (the same agents and handlers as ``serve``) and work until stopped."""
    from ai_med_extract.app import build_agents, build_handlers
    from ai_med_extract.db.engine import create_engine, create_sessionmaker
    from ai_med_extract.jobs.engine import Worker, build_app
    from ai_med_extract.jobs.events import JobEvents
    from ai_med_extract.jobs.executor import JobExecutor, worker_name
    from ai_med_extract.jobs.repository import JobRepository
    from ai_med_extract.storage.cipher import Cipher
    from ai_med_extract.storage.files import FileStore
    from ai_med_extract.storage.secrets import load_secrets

    secrets = load_secrets(settings)
    engine = create_engine(settings.database)
    sessionmaker = create_sessionmaker(engine)
    cipher = Cipher.from_secret(secrets.encryption_key)
    store = FileStore(settings.storage.directory, cipher)
    repository = JobRepository(sessionmaker, cipher, store)
    events = JobEvents(sessionmaker, cipher)
    from ai_med_extract.security.keyring import load_keyring

    async with sessionmaker() as session:
        keyring = await load_keyring(settings, session)
    agents = build_agents(settings, keyring)
    executor = JobExecutor(
        settings=settings.jobs,
        repository=repository,
        events=events,
        handlers=build_handlers(settings, agents),
        owner=worker_name("worker"),
    )
    app = build_app(settings, max_connections=settings.jobs.concurrency + 2)
    await events.listen(settings.database.url)  # cancel requests from any API replica
    try:
        async with app.open_async():
            await Worker(settings=settings.jobs, app=app, executor=executor, repository=repository, events=events).run()
    finally:
        await events.close()
        await agents.close()
        await engine.dispose()


def register(app: typer.Typer) -> None:
    @app.command()
    def worker(
        concurrency: int = typer.Option(None, help="Jobs run at the same time (default: settings)"),
    ) -> None:
        """Run jobs from the shared queue (needs AME_JOBS__ENGINE=procrastinate and PostgreSQL)."""
        from ai_med_extract.observability.logs import configure_logging

        settings = Settings()
        if settings.jobs.engine is not JobEngine.procrastinate:
            typer.echo("the worker needs AME_JOBS__ENGINE=procrastinate (embedded jobs run inside `serve`)", err=True)
            raise typer.Exit(2)
        if concurrency:
            settings.jobs.concurrency = concurrency
        configure_logging(settings.logging)
        if settings.jobs.worker_metrics_port:
            from prometheus_client import start_http_server

            start_http_server(settings.jobs.worker_metrics_port)
        asyncio.run(run_worker(settings))
