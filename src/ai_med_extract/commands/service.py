"""`serve`, `db upgrade|grant`, `keys create|revoke|rotate|status`, `audit checkpoint|verify|export`."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import typer

from ai_med_extract.commands.conventions import finish, usage_error
from ai_med_extract.config import Settings
from ai_med_extract.security.role import Role
from ai_med_extract.security.rotation import RotationTarget

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
        from ai_med_extract.security.keyring import load_keyring
        from ai_med_extract.security.keys import KeyService

        settings = Settings()

        async def work(session):  # type: ignore[no-untyped-def]
            service = KeyService(await load_keyring(settings, session))
            row, token = await service.create(session, name=name, role=role, tenant=tenant)
            return row.id, token

        key_id, token = asyncio.run(_with_session(settings, work))
        typer.echo(f"key id {key_id} ({role.value}): {token}")
        typer.echo("Store it now: it cannot be shown again.", err=True)

    @keys.command("revoke")
    def keys_revoke(key_id: int = typer.Argument(..., help="The id printed by `keys create`")) -> None:
        """Revoke an API key."""
        from ai_med_extract.security.keyring import Keyring
        from ai_med_extract.security.keys import KeyService

        service = KeyService(Keyring(masters=()))  # revoking needs no key
        done = asyncio.run(_with_session(Settings(), lambda s: service.revoke(s, key_id)))
        if not done:
            typer.echo(f"no active key with id {key_id}", err=True)
            raise typer.Exit(1)
        typer.echo(f"key {key_id} revoked")

    @keys.command("rotate")
    def keys_rotate(
        purpose: RotationTarget = typer.Option(..., help="api-keys, audit (chain and checkpoints) or phi"),
    ) -> None:
        """Move a purpose's derived key to its next version (see README, Security: key rotation).

        api-keys: existing keys keep working and are re-hashed under the new key on their next use.
        audit: new rows and checkpoints are signed with the new keys; the old segment still verifies.
        phi: new documents get new pseudonyms and date shifts (not linkable to those made before).
        Restart the service and workers afterwards: until then they use the previous key."""
        import getpass

        from ai_med_extract.audit.checkpoint import CheckpointLog, write_checkpoint
        from ai_med_extract.security.keyring import load_keyring
        from ai_med_extract.security.rotation import KeyConfigured, rotate

        settings = Settings()
        try:
            done = asyncio.run(_with_session(
                settings, lambda s: rotate(s, settings, purpose, actor=f"cli:{getpass.getuser()}")))
        except KeyConfigured as exc:
            raise usage_error(str(exc)) from None
        for name, kid in done.current.items():
            typer.echo(f"{name.value}: key {done.previous[name] or 'master secret'} -> {kid}")
        if purpose is RotationTarget.audit:

            async def checkpoint(session):  # type: ignore[no-untyped-def]
                log = CheckpointLog(settings.checkpoint_dir, await load_keyring(settings, session),
                                    syslog_address=settings.audit.checkpoint_syslog)
                return await write_checkpoint(session, log)

            head = asyncio.run(_with_session(settings, checkpoint))
            typer.echo(f"checkpoint at row {head.last_id} signed with the new checkpoint key")
        typer.echo(f"rotation recorded in audit row {done.audit_row}; restart the service and workers to use it")

    @keys.command("status")
    def keys_status() -> None:
        """Each purpose's current key id and where it comes from; active API keys per hashing key."""
        from ai_med_extract.security.keyring import Purpose, load_keyring
        from ai_med_extract.security.keys import KeyService

        settings = Settings()

        async def work(session):  # type: ignore[no-untyped-def]
            keyring = await load_keyring(settings, session)
            return keyring, await KeyService(keyring).counts_by_key_id(session)

        keyring, counts = asyncio.run(_with_session(settings, work))
        for p in Purpose:
            source = "configured" if keyring.is_configured(p) else f"derived, version {keyring.version(p)}"
            typer.echo(f"{p.value}: key {keyring.current(p).kid} ({source})")
        current = keyring.current(Purpose.api_keys).kid
        for kid, n in sorted(counts.items(), key=lambda item: str(item[0])):
            state = "current" if kid == current else "previous key: moves on next use, or revoke and re-issue"
            typer.echo(f"  api keys hashed with {kid or 'the master secret'}: {n} ({state})")

    @audit.command("checkpoint")
    def audit_checkpoint() -> None:
        """Append a signed checkpoint of the chain's head (row count and last hash) to the checkpoint file."""
        from ai_med_extract.audit.checkpoint import CheckpointLog, write_checkpoint
        from ai_med_extract.security.keyring import load_keyring

        settings = Settings()

        async def work(session):  # type: ignore[no-untyped-def]
            log = CheckpointLog(settings.checkpoint_dir, await load_keyring(settings, session),
                                syslog_address=settings.audit.checkpoint_syslog)
            return log, await write_checkpoint(session, log)

        log, checkpoint = asyncio.run(_with_session(settings, work))
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
        from ai_med_extract.security.keyring import load_keyring

        settings = Settings()

        async def work(session):  # type: ignore[no-untyped-def]
            keyring = await load_keyring(settings, session)
            checkpoint, checkpoint_problems = CheckpointLog(settings.checkpoint_dir, keyring).last()
            return checkpoint, checkpoint_problems, await verify_chain(session, keyring, checkpoint)

        checkpoint, checkpoint_problems, report = asyncio.run(_with_session(settings, work))
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
    from ai_med_extract.security.keyring import load_keyring
    from ai_med_extract.security.keys import KeyService

    async def work(session):  # type: ignore[no-untyped-def]
        service = KeyService(await load_keyring(settings, session))
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
