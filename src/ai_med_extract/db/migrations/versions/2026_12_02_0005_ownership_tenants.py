"""Ownership: an optional tenant (organisation) on API keys and on every resource holding patient data.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_TABLES = ("api_keys", "jobs", "medical_records", "phi_mappings")


def upgrade() -> None:
    for table in _TABLES:
        op.add_column(table, sa.Column("tenant", sa.String(64), nullable=True))
    for table in _TABLES[1:]:
        op.create_index(f"ix_{table}_created_by", table, ["created_by"])


def downgrade() -> None:
    for table in _TABLES[1:]:
        op.drop_index(f"ix_{table}_created_by", table_name=table)
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("tenant")
