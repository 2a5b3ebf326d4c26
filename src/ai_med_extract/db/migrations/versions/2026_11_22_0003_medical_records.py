"""Medical data records with versioned clinician corrections.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BigIntPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "medical_records",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("document_id", sa.String(36), nullable=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("counts", JSONType, nullable=False),
        sa.Column("source_enc", sa.LargeBinary, nullable=False),
        sa.Column("data_enc", sa.LargeBinary, nullable=False),
        sa.Column("created_by", sa.String(255), nullable=True),
        sa.Column("updated_by", sa.String(255), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_medical_records_document_id", "medical_records", ["document_id"])
    op.create_index("ix_medical_records_created_at", "medical_records", ["created_at"])
    op.create_table(
        "medical_record_versions",
        sa.Column("id", BigIntPK, primary_key=True, autoincrement=True),
        sa.Column(
            "record_id",
            sa.String(36),
            sa.ForeignKey("medical_records.id", ondelete="CASCADE", name="fk_medical_record_versions_record_id_medical_records"),
            nullable=False,
        ),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("data_enc", sa.LargeBinary, nullable=False),
        sa.Column("counts", JSONType, nullable=False),
        sa.Column("changed_by", sa.String(255), nullable=True),
        sa.Column("reason", sa.String(32), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("record_id", "version", name="uq_medical_record_versions_record_version"),
    )
    op.create_index("ix_medical_record_versions_record_id", "medical_record_versions", ["record_id"])


def downgrade() -> None:
    op.drop_index("ix_medical_record_versions_record_id", table_name="medical_record_versions")
    op.drop_table("medical_record_versions")
    op.drop_index("ix_medical_records_created_at", table_name="medical_records")
    op.drop_index("ix_medical_records_document_id", table_name="medical_records")
    op.drop_table("medical_records")
