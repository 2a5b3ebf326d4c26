"""PHI re-identification mappings (reversible scrubbing).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "phi_mappings",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("patient_ref", sa.String(64), nullable=True),
        sa.Column("created_by", sa.String(255), nullable=True),
        sa.Column("token_count", sa.Integer, nullable=False),
        sa.Column("mapping_enc", sa.LargeBinary, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_phi_mappings_patient_ref", "phi_mappings", ["patient_ref"])
    op.create_index("ix_phi_mappings_created_at", "phi_mappings", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_phi_mappings_created_at", table_name="phi_mappings")
    op.drop_index("ix_phi_mappings_patient_ref", table_name="phi_mappings")
    op.drop_table("phi_mappings")
