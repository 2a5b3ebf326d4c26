"""Patient summary result cache: no table.

The summary result cache is an in-memory LRU (``AME_SUMMARY__CACHE_SIZE`` entries, the architecture's
L2 result cache); summaries are also kept, encrypted, as the results of their jobs. This revision keeps
the reserved number in the chain.

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
