"""Case money (issue 38): each case's sub-account at the court's bank, the bank's statement lines, and the
double-entry journal, append-only like the audit log (the triggers of `append_only`).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 09:00:00
"""

import sqlalchemy as sa
from alembic import op

import models.tables
from clerk.store.migrations.append_only import create_append_only, drop_append_only

APPEND_ONLY = ("money_subaccounts", "money_statement_lines", "money_entries", "money_legs")


revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "money_statement_cursor",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", models.tables.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_money_statement_cursor")),
    )
    op.create_table(
        "money_statement_lines",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("reference", sa.String(length=64), nullable=False),
        sa.Column("booked_at", models.tables.UTCDateTime(), nullable=False),
        sa.Column("value_date", sa.Date(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("credit", sa.Boolean(), nullable=False),
        sa.Column("subaccount", sa.String(length=32), nullable=True),
        sa.Column("reversal_of", sa.String(length=64), nullable=True),
        sa.Column("counterparty_account", sa.String(length=64), nullable=True),
        sa.Column("counterparty_name", sa.String(length=200), nullable=True),
        sa.Column("remittance", sa.Text(), nullable=False),
        sa.Column("recorded_at", models.tables.UTCDateTime(), nullable=False),
        sa.CheckConstraint("amount_fen > 0", name=op.f("ck_money_statement_lines_amount_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_money_statement_lines")),
        sa.UniqueConstraint("reference", name=op.f("uq_money_statement_lines_reference")),
    )
    with op.batch_alter_table("money_statement_lines", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_money_statement_lines_seq"), ["seq"], unique=False)

    op.create_table(
        "money_subaccounts",
        sa.Column(
            "case_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("opened_at", models.tables.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_money_subaccounts_case_id_cases")),
        sa.PrimaryKeyConstraint("case_id", name=op.f("pk_money_subaccounts")),
        sa.UniqueConstraint("number", name=op.f("uq_money_subaccounts_number")),
    )
    op.create_table(
        "money_entries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("case_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("line_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("action_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("at", models.tables.UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('arrived', 'split', 'unidentified', 'assigned', 'to_return', 'reversed')",
            name=op.f("ck_money_entries_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["action_id"], ["measure_actions.id"], name=op.f("fk_money_entries_action_id_measure_actions")
        ),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_money_entries_case_id_cases")),
        sa.ForeignKeyConstraint(
            ["line_id"],
            ["money_statement_lines.id"],
            name=op.f("fk_money_entries_line_id_money_statement_lines"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_money_entries")),
    )
    with op.batch_alter_table("money_entries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_money_entries_case_id"), ["case_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_money_entries_line_id"), ["line_id"], unique=False)

    op.create_table(
        "money_legs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("entry_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("account", sa.String(length=16), nullable=False),
        sa.Column("case_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("fen", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "account IN ('bank', 'received', 'fees', 'applicant', 'refundable', 'escrow', 'paid_out', "
            "'unidentified', 'to_return')",
            name=op.f("ck_money_legs_account"),
        ),
        sa.CheckConstraint("fen <> 0", name=op.f("ck_money_legs_fen_nonzero")),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_money_legs_case_id_cases")),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["money_entries.id"], name=op.f("fk_money_legs_entry_id_money_entries")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_money_legs")),
    )
    with op.batch_alter_table("money_legs", schema=None) as batch_op:
        batch_op.create_index("ix_money_legs_account_case", ["account", "case_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_money_legs_entry_id"), ["entry_id"], unique=False)

    for table in APPEND_ONLY:
        create_append_only(op.get_bind(), table)


def downgrade() -> None:
    for table in APPEND_ONLY:
        drop_append_only(op.get_bind(), table)
    with op.batch_alter_table("money_legs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_money_legs_entry_id"))
        batch_op.drop_index("ix_money_legs_account_case")

    op.drop_table("money_legs")
    with op.batch_alter_table("money_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_money_entries_line_id"))
        batch_op.drop_index(batch_op.f("ix_money_entries_case_id"))

    op.drop_table("money_entries")
    op.drop_table("money_subaccounts")
    with op.batch_alter_table("money_statement_lines", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_money_statement_lines_seq"))

    op.drop_table("money_statement_lines")
    op.drop_table("money_statement_cursor")
