"""`serve`, `db upgrade|grant`, `keys create|revoke`, `audit checkpoint|verify|export`."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import typer

from ai_med_extract.commands.conventions import finish
from ai_med_extract.config import Settings
from ai_med_extract.security.role import Role

# The migrations are part of the package, so an installed wheel can upgrade a database.
MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "db" / "migrations"


# Any fixed 64-bit number: the PostgreSQL advisory lock that lets one replica migrate at a time.
MIGRATION_LOCK = 7_300_512_001


def upgrade_database(url: str) -> None:
    """Apply every migration to the database at ``url`` (creating it from empty).

    On PostgreSQL the migrations run under an advisory lock, so replicas starting at once migrate
    one after another (the later ones find nothing left to do); the task engine's tables are created
    under the same lock."""
    if url.startswith("postgresql"):
        asyncio.run(_upgrade_locked(url))
    else:
        _alembic_upgrade(url)


def _alembic_upgrade(url: str) -> None:
    from alembic import command
    from alembic.config import Config

    from ai_med_extract.db.engine import private_sqlite_file, sqlite_path

    path = sqlite_path(url)
    if path is not None:
        private_sqlite_file(path)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(config, "head")


async def _upgrade_locked(url: str) -> None:
    import asyncpg

    from ai_med_extract.jobs.engine import apply_schema
    from ai_med_extract.jobs.events import libpq_url

    conn = await asyncpg.connect(libpq_url(url))
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
        try:
            await asyncio.to_thread(_alembic_upgrade, url)  # alembic runs its own event loop
            await apply_schema(url)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
    finally:
        await conn.close()


async def _with_session(settings: Settings, work):  # type: ignore[no-untyped-def]
    from ai_med_extract.db.engine import create_engine, create_sessionmaker

    engine = create_engine(settings.database)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            return await work(session)
    finally:
        await engine.dispose()


def register(app: typer.Typer) -> None:
    db = typer.Typer(help="Database migrations", no_args_is_help=True)
    keys = typer.Typer(help="API keys", no_args_is_help=True)
    audit = typer.Typer(help="HIPAA audit trail", no_args_is_help=True)
    app.add_typer(db, name="db")
    app.add_typer(keys, name="keys")
    app.add_typer(audit, name="audit")

    @app.command()
    def serve(
        host: str = typer.Option(None, help="Bind address (default: settings)"),
        port: int = typer.Option(None, help="Port (default: settings)"),
        upgrade: bool = typer.Option(True, help="Apply database migrations first"),
        bootstrap_key: bool = typer.Option(
            True, help="With auth on and no API key yet, create an admin key and print it once"
        ),
    ) -> None:
        """Run the HTTP service."""
        import uvicorn

        from ai_med_extract.app import create_app

        settings = Settings()
        if upgrade:
            upgrade_database(settings.database.migration_url)
        if bootstrap_key and settings.security.auth_enabled:
            _bootstrap_admin_key(settings)
        uvicorn.run(
            create_app(settings),
            host=host or settings.host,
            port=port or settings.port,
            access_log=False,
            log_config=None,
            # X-Forwarded-For is read by the app, from AME_SECURITY__TRUSTED_PROXIES only
            proxy_headers=False,
        )

    @db.command("upgrade")
    def db_upgrade() -> None:
        """Apply all migrations (creates the schema on an empty database)."""
        upgrade_database(Settings().database.migration_url)
        typer.echo("database is up to date")

    @db.command("grant")
    def db_grant(
        role: str = typer.Option(..., help="The service role (an existing PostgreSQL role)"),
    ) -> None:
        """PostgreSQL: give the service role what the app needs, and only SELECT/INSERT on audit_logs.
        Runs as the owner (AME_DATABASE__OWNER_URL, else AME_DATABASE__URL)."""
        from ai_med_extract.db.roles import grant_service_role

        statements = asyncio.run(grant_service_role(Settings().database.migration_url, role))
        typer.echo(f"{len(statements)} grants applied to {role}")

    @keys.command("create")
    def keys_create(
        role: Role = typer.Option(..., help="reader, clinician or admin"),
        name: str = typer.Option("default", help="A label for the key (no personal data)"),
        tenant: str | None = typer.Option(
            None, help="Organisation the key belongs to: it sees only that tenant's resources"
        ),
    ) -> None:
        """Create an API key; it is shown once and stored only as a hash."""
        from ai_med_extract.security.keys import KeyService
        from ai_med_extract.storage.secrets import load_secrets

        settings = Settings()
        service = KeyService(load_secrets(settings).secret_key)

        async def work(session):  # type: ignore[no-untyped-def]
            row, token = await service.create(session, name=name, role=role, tenant=tenant)
            return row.id, token

        key_id, token = asyncio.run(_with_session(settings, work))
        typer.echo(f"key id {key_id} ({role.value}): {token}")
        typer.echo("Store it now: it cannot be shown again.", err=True)

    @keys.command("revoke")
    def keys_revoke(key_id: int = typer.Argument(..., help="The id printed by `keys create`")) -> None:
        """Revoke an API key."""
        from ai_med_extract.security.keys import KeyService
        from ai_med_extract.storage.secrets import load_secrets

        settings = Settings()
        service = KeyService(load_secrets(settings).secret_key)
        done = asyncio.run(_with_session(settings, lambda s: service.revoke(s, key_id)))
        if not done:
            typer.echo(f"no active key with id {key_id}", err=True)
            raise typer.Exit(1)
        typer.echo(f"key {key_id} revoked")

    @audit.command("checkpoint")
    def audit_checkpoint() -> None:
        """Append a signed checkpoint of the chain's head (row count and last hash) to the checkpoint file."""
        from ai_med_extract.audit.checkpoint import CheckpointLog, write_checkpoint
        from ai_med_extract.storage.secrets import load_secrets

        settings = Settings()
        log = CheckpointLog(settings.checkpoint_dir, load_secrets(settings).secret_key,
                            syslog_address=settings.audit.checkpoint_syslog)
        checkpoint = asyncio.run(_with_session(settings, lambda s: write_checkpoint(s, log)))
        typer.echo(f"checkpoint: {checkpoint.rows} rows, last row {checkpoint.last_id}, written to {log.path}")

    @audit.command("export")
    def audit_export(
        after_id: int = typer.Option(0, help="Only rows after this id"),
        output: Path = typer.Option(Path("-"), help="File to write (default: standard output)"),
    ) -> None:
        """Write the audit trail as FHIR R4 AuditEvent NDJSON (metadata only)."""
        import json

        from ai_med_extract.audit.fhir import export_events

        async def work(session):  # type: ignore[no-untyped-def]
            lines = []
            async for event in export_events(session, after_id):
                lines.append(json.dumps(event, separators=(",", ":")))
            return lines

        lines = asyncio.run(_with_session(Settings(), work))
        text = "".join(line + "\n" for line in lines)
        if str(output) == "-":
            sys.stdout.write(text)
        else:
            output.write_text(text)
            typer.echo(f"{len(lines)} AuditEvent resources written to {output}", err=True)

    @audit.command("verify")
    def audit_verify() -> None:
        """Check the audit trail's hash chain against the last checkpoint; name each edited row, broken
        link or cut tail."""
        from ai_med_extract.audit.checkpoint import CheckpointLog
        from ai_med_extract.audit.trail import verify_chain
        from ai_med_extract.storage.secrets import load_secrets

        settings = Settings()
        secret = load_secrets(settings).secret_key
        checkpoint, checkpoint_problems = CheckpointLog(settings.checkpoint_dir, secret).last()
        report = asyncio.run(_with_session(settings, lambda s: verify_chain(s, secret, checkpoint)))
        for line in checkpoint_problems:
            typer.echo(line)
        if report.ok and not checkpoint_problems:
            against = f", consistent with the checkpoint of {checkpoint.at}" if checkpoint else " (no checkpoint yet)"
            typer.echo(f"audit trail intact: {report.rows_checked} rows verified{against}")
            return
        for problem in report.problems:
            typer.echo(f"row {problem.row_id}: {problem.reason}")
        typer.echo(f"audit trail TAMPERED: {len(report.problems)} problem(s) in {report.rows_checked} rows")
        finish(1)  # the trail failed the check (2 is kept for usage errors)


def _bootstrap_admin_key(settings: Settings) -> None:
    from ai_med_extract.security.keys import KeyService
    from ai_med_extract.storage.secrets import load_secrets

    service = KeyService(load_secrets(settings).secret_key)

    async def work(session):  # type: ignore[no-untyped-def]
        if await service.count_active(session):
            return None
        _, token = await service.create(session, name="bootstrap-admin", role=Role.admin)
        return token

    token = asyncio.run(_with_session(settings, work))
    if token:
        # Shown once on the console (not through logging), like a notebook server's token.
        sys.stderr.write(
            "\n  No API key existed, so an admin key was created. It will not be shown again:\n"
            f"\n      {token}\n\n  Use it in the X-API-Key header or paste it into the web page.\n\n"
        )
