"""The two PostgreSQL roles: the owner that migrations run as, and the service role the app uses.

The owner owns every table (and so alone may alter or drop them and their triggers). The service
role gets what the app needs and no more: read and write on the working tables, only SELECT and
INSERT on ``audit_logs`` (no UPDATE, DELETE or TRUNCATE, and, not being the owner, no DROP or
DISABLE of its append-only triggers), read-only on ``alembic_version``.
"""

from __future__ import annotations

import re

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

_ROLE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
READ_ONLY = ("alembic_version",)
APPEND_ONLY = ("audit_logs",)


def grant_statements(role: str, tables: list[str]) -> list[str]:
    if not _ROLE.match(role):
        raise ValueError("a role name is lower-case letters, digits and underscores")
    statements = [
        f"GRANT USAGE ON SCHEMA public TO {role}",
        f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}",
    ]
    for table in tables:
        if table in APPEND_ONLY:
            statements.append(f"GRANT SELECT, INSERT ON {table} TO {role}")
        elif table in READ_ONLY:
            statements.append(f"GRANT SELECT ON {table} TO {role}")
        else:
            statements.append(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {role}")
    statements.append(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}")
    return statements


async def grant_service_role(owner_url: str, role: str) -> list[str]:
    """Apply the service role's grants, connected as the owner; returns the statements run."""
    engine = create_async_engine(owner_url)
    try:
        async with engine.begin() as conn:
            if conn.dialect.name != "postgresql":
                raise ValueError("database roles exist on PostgreSQL only")
            tables = [r[0] for r in await conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"))]
            statements = grant_statements(role, tables)
            for statement in statements:
                await conn.execute(text(statement))
        return statements
    finally:
        await engine.dispose()
