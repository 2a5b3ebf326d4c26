"""Patient summary result cache: no table.

The summary result cache is an in-memory LRU (``AME_SUMMARY__CACHE_SIZE`` entries, the architecture's
L2 result cache); summaries are also kept, encrypted, as the results of their jobs.

This revision changes nothing and stays on purpose: databases already upgraded are stamped ``0004``
in ``alembic_version``, and alembic refuses to upgrade a database whose stamped revision it cannot
find. Removing it (or pointing 0005 at 0003) would strand every such database.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
