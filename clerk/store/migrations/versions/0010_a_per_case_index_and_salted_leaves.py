"""The audit log proves a case's export complete (issue 41): each signed head also commits to a per-case
index (`audit_cases`, `audit_index_tiles`; a head's `index_root` and `cases`), and a new event's leaf
carries a secret salt (`audit_events.salt`) so that another case's proof reveals nothing guessable.

Events written before keep their leaves (log format v1, no salt) and heads signed before stay as they are
(head v1, no index): both are checked as before. The index is built from the whole log at the next signed
head, by the sequencer (clerk.store.caseindex), not here: it needs no key, but it is the sequencer's work.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 21:30:00
"""

import sqlalchemy as sa
from alembic import op

from clerk.store.migrations.append_only import create_append_only, drop_append_only

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    conn = op.get_bind()
    op.add_column("audit_events", sa.Column("salt", sa.String(length=32), nullable=True))
    if conn.dialect.name == "sqlite":  # its update trigger names the columns it keeps: the salt among them
        drop_append_only(conn, "audit_events")
        create_append_only(conn, "audit_events", set_once="position")
    op.add_column("audit_heads", sa.Column("index_root", sa.String(length=64), nullable=True))
    op.add_column("audit_heads", sa.Column("cases", Id, nullable=True))
    op.create_table(
        "audit_cases",
        sa.Column("case_number", sa.String(length=64), nullable=False),
        sa.Column("slot", Id, nullable=False),
        sa.Column("events", Id, nullable=False),
        sa.Column("chain", sa.LargeBinary(length=32), nullable=False),
        sa.Column("salt", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("case_number", name=op.f("pk_audit_cases")),
        sa.UniqueConstraint("slot", name=op.f("uq_audit_cases_slot")),
    )
    op.create_table(
        "audit_index_tiles",
        sa.Column("level", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("block", Id, autoincrement=False, nullable=False),
        sa.Column("hashes", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("level", "block", name=op.f("pk_audit_index_tiles")),
    )


def downgrade() -> None:
    """Back to log format v1: refused once an event carries a salt (its leaf cannot be rebuilt without)."""
    conn = op.get_bind()
    salted = conn.scalar(sa.text("SELECT count(*) FROM audit_events WHERE salt IS NOT NULL"))
    indexed = conn.scalar(sa.text("SELECT count(*) FROM audit_heads WHERE index_root IS NOT NULL"))
    if salted or indexed:
        raise RuntimeError(
            f"the log holds {salted} salted event(s) and {indexed} head(s) with a per-case index: "
            "the release before this one cannot check them; nothing was changed"
        )
    op.drop_table("audit_index_tiles")
    op.drop_table("audit_cases")
    for table, columns in (("audit_heads", ("cases", "index_root")), ("audit_events", ("salt",))):
        drop_append_only(conn, table)
        with op.batch_alter_table(table) as batch:
            for column in columns:
                batch.drop_column(column)
        create_append_only(conn, table, set_once="position" if table == "audit_events" else None)
