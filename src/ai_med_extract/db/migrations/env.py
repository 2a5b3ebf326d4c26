"""Alembic environment: runs migrations on the async engine of the configured database URL.

The URL comes from the ``sqlalchemy.url`` option when a caller sets it (``ai-med-extract db
upgrade`` and the tests do), else from the application settings (``AME_DATABASE__URL``).
"""

import asyncio
import importlib
import pkgutil

from alembic import context
from sqlalchemy.engine import Connection

import ai_med_extract.db as db_package
from ai_med_extract.config import DatabaseSettings, Settings
from ai_med_extract.db.base import Base
from ai_med_extract.db.engine import create_engine

for module in pkgutil.iter_modules(db_package.__path__):
    importlib.import_module(f"{db_package.__name__}.{module.name}")

target_metadata = Base.metadata


def _url() -> str:
    return context.config.get_main_option("sqlalchemy.url") or Settings().database.url


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_engine(DatabaseSettings(url=_url()))
    async with engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_async())
