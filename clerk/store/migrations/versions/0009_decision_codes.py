"""Proof of who decides (issue 40): the one-time codes sent to a deciding person's phone, sealed.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 14:30:00
"""

import sqlalchemy as sa
from alembic import op

import models.tables

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "decision_codes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("run", sa.String(length=64), nullable=False),
        sa.Column("case_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("person", sa.String(length=100), nullable=False),
        sa.Column("approve", sa.Boolean(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("salt", sa.LargeBinary(length=16), nullable=False),
        sa.Column("sealed", sa.LargeBinary(length=32), nullable=False),
        sa.Column("issued_at", models.tables.UTCDateTime(), nullable=False),
        sa.Column("expires_at", models.tables.UTCDateTime(), nullable=False),
        sa.Column("used_at", models.tables.UTCDateTime(), nullable=True),
        sa.Column("tries", sa.Integer(), nullable=False),
        sa.Column("last_try_at", models.tables.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_decision_codes_case_id_cases")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_decision_codes")),
    )
    with op.batch_alter_table("decision_codes", schema=None) as batch_op:
        batch_op.create_index("ix_decision_codes_person_issued", ["person", "issued_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_decision_codes_run"), ["run"], unique=False)


def downgrade() -> None:
    op.drop_table("decision_codes")
