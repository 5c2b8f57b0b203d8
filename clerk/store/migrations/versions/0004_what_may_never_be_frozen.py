"""What may never be frozen (issue 23): a deposit's purpose as its bank names it, a person's dependants,
and a judge's overrides per case; when a registry was last alerted for breaking the 24-hour rule.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 19:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("assets", sa.Column("purpose", sa.String(32), nullable=True))
    op.add_column("debtors", sa.Column("dependants", sa.Integer(), nullable=True))
    op.add_column("registries", sa.Column("late_alerted_at", sa.DateTime(), nullable=True))
    with op.batch_alter_table("cases") as batch:
        batch.add_column(
            sa.Column("override_allowance", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(
            sa.Column("override_protected", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("override_protected")
        batch.drop_column("override_allowance")
    op.drop_column("registries", "late_alerted_at")
    op.drop_column("debtors", "dependants")
    op.drop_column("assets", "purpose")
