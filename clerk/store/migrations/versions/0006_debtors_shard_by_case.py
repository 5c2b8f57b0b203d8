"""A debtor's shard key (issue 21): the province sweep splits debtors by their first case, so that a case's
debtors are swept by one shard and two shards do not wait on each other for the case's lock.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 00:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "debtors", sa.Column("shard_key", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True)
    )
    op.execute(
        "UPDATE debtors SET shard_key = "
        "(SELECT min(case_id) FROM case_debtors WHERE case_debtors.debtor_id = debtors.id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("debtors") as batch:
        batch.drop_column("shard_key")
