"""The case book: cases, debtors, payments, registries, queries, assets, measures and the audit trail.

Revision ID: 0001
Revises:
Create Date: 2026-11-23 14:58:06.765365
"""

import sqlalchemy as sa
from alembic import op

from clerk.store.migrations.append_only import create_append_only, drop_append_only

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column(
            "seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=False, nullable=False
        ),
        sa.Column("occurred_at", sa.DateTime(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("case_number", sa.String(length=64), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_events")),
        sa.UniqueConstraint("hash", name=op.f("uq_audit_events_hash")),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_events_action"), ["action"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_events_case_number"), ["case_number"], unique=False)

    op.create_table(
        "cases",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("case_number", sa.String(length=64), nullable=False),
        sa.Column("court_code", sa.String(length=16), nullable=False),
        sa.Column("filed_on", sa.Date(), nullable=False),
        sa.Column("judge", sa.String(length=100), nullable=False),
        sa.Column("applicant", sa.String(length=200), nullable=False),
        sa.Column("principal_fen", sa.BigInteger(), nullable=False),
        sa.Column("judgment_interest_fen", sa.BigInteger(), nullable=False),
        sa.Column("costs_fen", sa.BigInteger(), nullable=False),
        sa.Column("performance_due_on", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("track", sa.String(length=16), nullable=True),
        sa.Column("terminated_on", sa.Date(), nullable=True),
        sa.Column("resumed_from_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "status IN ('active', 'terminated', 'paid', 'withdrawn', 'closed')", name=op.f("ck_cases_status")
        ),
        sa.CheckConstraint("costs_fen >= 0", name=op.f("ck_cases_costs_nonneg")),
        sa.CheckConstraint("judgment_interest_fen >= 0", name=op.f("ck_cases_judgment_interest_nonneg")),
        sa.CheckConstraint("principal_fen > 0", name=op.f("ck_cases_principal_positive")),
        sa.ForeignKeyConstraint(
            ["resumed_from_id"], ["cases.id"], name=op.f("fk_cases_resumed_from_id_cases")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cases")),
        sa.UniqueConstraint("case_number", name=op.f("uq_cases_case_number")),
    )
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cases_court_code"), ["court_code"], unique=False)
        batch_op.create_index(batch_op.f("ix_cases_status"), ["status"], unique=False)

    op.create_table(
        "debtors",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("id_number", sa.String(length=18), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_queried_at", sa.DateTime(), nullable=True),
        sa.CheckConstraint("kind IN ('person', 'organisation')", name=op.f("ck_debtors_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_debtors")),
        sa.UniqueConstraint("id_number", name=op.f("uq_debtors_id_number")),
    )
    op.create_table(
        "query_runs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("trigger", sa.String(length=32), nullable=False),
        sa.Column("flow_run_id", sa.String(length=64), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_query_runs")),
    )
    op.create_table(
        "registries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.CheckConstraint("kind IN ('bank', 'real_estate', 'vehicle')", name=op.f("ck_registries_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registries")),
        sa.UniqueConstraint("code", name=op.f("uq_registries_code")),
    )
    op.create_table(
        "case_debtors",
        sa.Column("case_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("debtor_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_case_debtors_case_id_cases"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["debtor_id"], ["debtors.id"], name=op.f("fk_case_debtors_debtor_id_debtors")
        ),
        sa.PrimaryKeyConstraint("case_id", "debtor_id", name=op.f("pk_case_debtors")),
    )
    with op.batch_alter_table("case_debtors", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_case_debtors_debtor_id"), ["debtor_id"], unique=False)

    op.create_table(
        "payments",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("case_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("paid_on", sa.Date(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint("amount_fen > 0", name=op.f("ck_payments_amount_positive")),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_payments_case_id_cases"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments")),
    )
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_payments_case_id"), ["case_id"], unique=False)

    op.create_table(
        "queries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("registry_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("debtor_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("registry_reference", sa.String(length=128), nullable=True),
        sa.Column("sent_at", sa.DateTime(), nullable=False),
        sa.Column("answered_at", sa.DateTime(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('sent', 'pending', 'answered', 'failed')", name=op.f("ck_queries_status")
        ),
        sa.ForeignKeyConstraint(["debtor_id"], ["debtors.id"], name=op.f("fk_queries_debtor_id_debtors")),
        sa.ForeignKeyConstraint(
            ["registry_id"], ["registries.id"], name=op.f("fk_queries_registry_id_registries")
        ),
        sa.ForeignKeyConstraint(["run_id"], ["query_runs.id"], name=op.f("fk_queries_run_id_query_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_queries")),
        sa.UniqueConstraint("run_id", "registry_id", "debtor_id", name="uq_queries_run_registry_debtor"),
    )
    with op.batch_alter_table("queries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_queries_debtor_id"), ["debtor_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_queries_run_id"), ["run_id"], unique=False)

    op.create_table(
        "assets",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("debtor_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("registry_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("identifier", sa.String(length=64), nullable=False),
        sa.Column("balance_fen", sa.BigInteger(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("other_measures", sa.JSON(), nullable=True),
        sa.Column("first_query_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("first_seen_at", sa.DateTime(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint("kind IN ('deposit', 'real_estate', 'vehicle')", name=op.f("ck_assets_kind")),
        sa.CheckConstraint("balance_fen IS NULL OR balance_fen >= 0", name=op.f("ck_assets_balance_nonneg")),
        sa.ForeignKeyConstraint(["debtor_id"], ["debtors.id"], name=op.f("fk_assets_debtor_id_debtors")),
        sa.ForeignKeyConstraint(
            ["first_query_id"], ["queries.id"], name=op.f("fk_assets_first_query_id_queries")
        ),
        sa.ForeignKeyConstraint(
            ["registry_id"], ["registries.id"], name=op.f("fk_assets_registry_id_registries")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assets")),
        sa.UniqueConstraint("registry_id", "identifier", name="uq_assets_registry_identifier"),
    )
    with op.batch_alter_table("assets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_assets_debtor_id"), ["debtor_id"], unique=False)

    op.create_table(
        "control_measures",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("case_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("asset_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("registry_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("requested_amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("actual_amount_fen", sa.BigInteger(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=64), nullable=False),
        sa.Column("registry_reference", sa.String(length=128), nullable=True),
        sa.Column("started_on", sa.Date(), nullable=True),
        sa.Column("expires_on", sa.Date(), nullable=True),
        sa.Column("queue_position", sa.Integer(), nullable=True),
        sa.Column("renews_measure_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint("kind IN ('freeze', 'seizure')", name=op.f("ck_control_measures_kind")),
        sa.CheckConstraint(
            "status IN ('requested', 'effective', 'queued', 'renewed', 'released', 'expired', 'failed')",
            name=op.f("ck_control_measures_status"),
        ),
        sa.CheckConstraint(
            "actual_amount_fen IS NULL OR actual_amount_fen >= 0",
            name=op.f("ck_control_measures_actual_nonneg"),
        ),
        sa.CheckConstraint(
            "expires_on IS NULL OR started_on IS NULL OR expires_on >= started_on",
            name=op.f("ck_control_measures_expiry_after_start"),
        ),
        sa.CheckConstraint(
            "queue_position IS NULL OR queue_position >= 1",
            name=op.f("ck_control_measures_queue_position_positive"),
        ),
        sa.CheckConstraint("requested_amount_fen >= 0", name=op.f("ck_control_measures_requested_nonneg")),
        sa.ForeignKeyConstraint(
            ["asset_id"], ["assets.id"], name=op.f("fk_control_measures_asset_id_assets")
        ),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_control_measures_case_id_cases")),
        sa.ForeignKeyConstraint(
            ["registry_id"], ["registries.id"], name=op.f("fk_control_measures_registry_id_registries")
        ),
        sa.ForeignKeyConstraint(
            ["renews_measure_id"],
            ["control_measures.id"],
            name=op.f("fk_control_measures_renews_measure_id_control_measures"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_control_measures")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_control_measures_idempotency_key")),
    )
    with op.batch_alter_table("control_measures", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_control_measures_asset_id"), ["asset_id"], unique=False)
        batch_op.create_index("ix_control_measures_case_status", ["case_id", "status"], unique=False)
        batch_op.create_index(batch_op.f("ix_control_measures_expires_on"), ["expires_on"], unique=False)
    create_append_only(op.get_bind(), "audit_events")


def downgrade() -> None:
    drop_append_only(op.get_bind(), "audit_events")
    with op.batch_alter_table("control_measures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_control_measures_expires_on"))
        batch_op.drop_index("ix_control_measures_case_status")
        batch_op.drop_index(batch_op.f("ix_control_measures_asset_id"))

    op.drop_table("control_measures")
    with op.batch_alter_table("assets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_assets_debtor_id"))

    op.drop_table("assets")
    with op.batch_alter_table("queries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_queries_run_id"))
        batch_op.drop_index(batch_op.f("ix_queries_debtor_id"))

    op.drop_table("queries")
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_payments_case_id"))

    op.drop_table("payments")
    with op.batch_alter_table("case_debtors", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_case_debtors_debtor_id"))

    op.drop_table("case_debtors")
    op.drop_table("registries")
    op.drop_table("query_runs")
    op.drop_table("debtors")
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cases_status"))
        batch_op.drop_index(batch_op.f("ix_cases_court_code"))

    op.drop_table("cases")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_events_case_number"))
        batch_op.drop_index(batch_op.f("ix_audit_events_action"))

    op.drop_table("audit_events")
