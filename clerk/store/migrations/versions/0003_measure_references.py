"""An index on each measure's registry reference: every batch of control answers checks that the freeze
numbers it names are not already another measure's (issue 25), which without it read the whole table.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 17:55:00
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_control_measures_registry_reference",
        "control_measures",
        ["registry_id", "registry_reference"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_control_measures_registry_reference", table_name="control_measures")
