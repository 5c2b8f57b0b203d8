"""Lookups lose their index on the run alone (issue 21): the unique key (run, registry, debtor) begins with
the run and serves every read by run, and each lookup written paid for one index more.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 00:00:00
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index(op.f("ix_queries_run_id"), table_name="queries")


def downgrade() -> None:
    op.create_index(op.f("ix_queries_run_id"), "queries", ["run_id"], unique=False)
