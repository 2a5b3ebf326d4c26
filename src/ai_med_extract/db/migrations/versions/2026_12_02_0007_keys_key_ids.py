"""Key ids beside API-key hashes, audit rows and PHI patient references; the key_versions table
that ``ai-med-extract keys rotate`` writes.

Existing rows keep an empty key id: they were made with the master secret itself, and the keyring
still verifies them with it (security/keyring.py).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    # Plain ADD COLUMN (no batch copy on SQLite): audit_logs keeps its append-only triggers.
    op.add_column("api_keys", sa.Column("key_id", sa.String(24), nullable=True))
    op.add_column("audit_logs", sa.Column("key_id", sa.String(24), nullable=True))
    op.add_column("phi_mappings", sa.Column("key_id", sa.String(24), nullable=True))
    op.create_table(
        "key_versions",
        sa.Column("purpose", sa.String(32), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("key_id", sa.String(24), nullable=False),
        sa.Column("rotated_at", TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("key_versions")
    op.drop_column("phi_mappings", "key_id")
    op.drop_column("audit_logs", "key_id")
    op.drop_column("api_keys", "key_id")
