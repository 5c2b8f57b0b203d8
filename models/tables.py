"""The case book's tables (SQLAlchemy 2, typed). Money is integer fen; times are timezone-aware UTC;
registries' dates are dates. Constraints live here, in the schema, so the database enforces them.

The schema itself is created by Alembic migrations (`clerk/migrations`), which also install the
triggers that make `audit_events` append-only; `tests/usecases/test_schema.py` checks that the
migrations and these models agree.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from models.money import Account
from models.status import ActionKind, ActionStatus, CaseStatus, LookupStatus, MeasureStatus, NoticeStatus
from models.supervision import Track

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC timestamp on every database (SQLite keeps no zone: store naive UTC)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        return None if value is None else value.replace(tzinfo=dt.UTC)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# Integer primary keys: BIGINT on PostgreSQL, INTEGER (the rowid alias) on SQLite.
Id = BigInteger().with_variant(Integer(), "sqlite")
Fen = BigInteger


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dt.datetime: UTCDateTime, dict[str, Any]: JSON}


#: `resumed`: a terminated-for-now case whose re-query found assets; it lives on as a new 执恢 case.
CASE_STATUSES = tuple(CaseStatus)
TRACKS = tuple(t.value for t in Track)
DEBTOR_KINDS = ("person", "organisation")
REGISTRY_KINDS = ("bank", "real_estate", "vehicle")
ASSET_KINDS = ("deposit", "real_estate", "vehicle")
MEASURE_KINDS = ("freeze", "seizure")
MEASURE_STATUSES = tuple(MeasureStatus)
QUERY_STATUSES = tuple(LookupStatus)
ACTION_KINDS = tuple(ActionKind)
ACTION_STATUSES = tuple(ActionStatus)
NOTIFICATION_STATUSES = tuple(NoticeStatus)
NODES = ("query", "control", "renewal", "supervision")
NOTICE_LEVELS = ("warning", "overdue")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(str(v)) for v in values)})"


class Case(Base):
    __tablename__ = "cases"
    __table_args__ = (
        CheckConstraint(_one_of("status", CASE_STATUSES), name="status"),
        CheckConstraint("principal_fen > 0", name="principal_positive"),
        CheckConstraint("judgment_interest_fen >= 0", name="judgment_interest_nonneg"),
        CheckConstraint("costs_fen >= 0", name="costs_nonneg"),
        CheckConstraint(f"track IS NULL OR {_one_of('track', TRACKS)}", name="track"),
        CheckConstraint("track_source IS NULL OR track_source IN ('auto', 'judge')", name="track_source"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    case_number: Mapped[str] = mapped_column(String(64), unique=True)
    court_code: Mapped[str] = mapped_column(String(16), index=True)
    filed_on: Mapped[dt.date] = mapped_column(Date)
    judge: Mapped[str] = mapped_column(String(100))
    applicant: Mapped[str] = mapped_column(String(200))
    principal_fen: Mapped[int] = mapped_column(Fen)
    judgment_interest_fen: Mapped[int] = mapped_column(Fen, default=0)
    costs_fen: Mapped[int] = mapped_column(Fen, default=0)
    performance_due_on: Mapped[dt.date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), default="active", index=True)
    track: Mapped[str | None] = mapped_column(String(16))
    # Who set the track: the triage rules ("auto") or a judge ("judge", never overwritten by triage).
    track_source: Mapped[str | None] = mapped_column(String(16))
    terminated_on: Mapped[dt.date | None] = mapped_column(Date)
    resumed_from_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # A judge's overrides for this case, each with a reason in the audit trail (models.exemptions): freeze
    # the living allowance too, or accounts whose purpose is protected.
    override_allowance: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    override_protected: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Bumped by every change that affects the cap, so that two writers cannot both pass it
    # (see clerk.cases; PostgreSQL also takes a row lock).
    version: Mapped[int] = mapped_column(Integer, default=1)

    debtors: Mapped[list[CaseDebtor]] = relationship(back_populates="case", cascade="all, delete-orphan")
    payments: Mapped[list[Payment]] = relationship(
        back_populates="case", order_by="Payment.paid_on", cascade="all, delete-orphan"
    )


class Debtor(Base):
    __tablename__ = "debtors"
    __table_args__ = (CheckConstraint(_one_of("kind", DEBTOR_KINDS), name="kind"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    id_number: Mapped[str] = mapped_column(String(18), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    # A natural person's dependants, when the case file says (the living allowance counts them).
    dependants: Mapped[int | None] = mapped_column(Integer)
    # Which shard of a province's sweep asks about this debtor (querying.due): its first case's id, so that
    # a case's debtors are swept by one shard; none: the debtor's own id.
    shard_key: Mapped[int | None] = mapped_column(Id)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_queried_at: Mapped[dt.datetime | None] = mapped_column()


class CaseDebtor(Base):
    __tablename__ = "case_debtors"

    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True)
    debtor_id: Mapped[int] = mapped_column(ForeignKey("debtors.id"), primary_key=True, index=True)

    case: Mapped[Case] = relationship(back_populates="debtors")
    debtor: Mapped[Debtor] = relationship()


class Payment(Base):
    __tablename__ = "payments"
    __table_args__ = (CheckConstraint("amount_fen > 0", name="amount_positive"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    paid_on: Mapped[dt.date] = mapped_column(Date)
    amount_fen: Mapped[int] = mapped_column(Fen)
    source: Mapped[str] = mapped_column(String(32), default="manual")
    recorded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    case: Mapped[Case] = relationship(back_populates="payments")


class Registry(Base):
    __tablename__ = "registries"
    __table_args__ = (CheckConstraint(_one_of("kind", REGISTRY_KINDS), name="kind"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    # When the deadlines flow last alerted that this registry broke the 24-hour rule (once a day at most).
    late_alerted_at: Mapped[dt.datetime | None] = mapped_column()


class QueryRun(Base):
    """One sweep or one on-demand case query."""

    __tablename__ = "query_runs"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    trigger: Mapped[str] = mapped_column(String(32))
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column()
    status: Mapped[str] = mapped_column(String(16), default="running")
    summary: Mapped[dict[str, Any] | None] = mapped_column()


class Query(Base):
    """One subject asked of one registry in one run."""

    __tablename__ = "queries"
    __table_args__ = (
        CheckConstraint(_one_of("status", QUERY_STATUSES), name="status"),
        UniqueConstraint("run_id", "registry_id", "debtor_id", name="uq_queries_run_registry_debtor"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    # Read by run through the unique key, which begins with it (no index of its own: migration 0007).
    run_id: Mapped[int] = mapped_column(ForeignKey("query_runs.id"))
    registry_id: Mapped[int] = mapped_column(ForeignKey("registries.id"))
    debtor_id: Mapped[int] = mapped_column(ForeignKey("debtors.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="sent")
    registry_reference: Mapped[str | None] = mapped_column(String(128))
    sent_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    answered_at: Mapped[dt.datetime | None] = mapped_column()
    error: Mapped[str | None] = mapped_column(Text)


class Asset(Base):
    """A hit: something a registry reported a debtor holds. One row per (registry, identifier)."""

    __tablename__ = "assets"
    __table_args__ = (
        CheckConstraint(_one_of("kind", ASSET_KINDS), name="kind"),
        CheckConstraint("balance_fen IS NULL OR balance_fen >= 0", name="balance_nonneg"),
        UniqueConstraint("registry_id", "identifier", name="uq_assets_registry_identifier"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    debtor_id: Mapped[int] = mapped_column(ForeignKey("debtors.id"), index=True)
    registry_id: Mapped[int] = mapped_column(ForeignKey("registries.id"))
    kind: Mapped[str] = mapped_column(String(16))
    # Account number, property certificate number or plate: personal data, masked wherever shown.
    identifier: Mapped[str] = mapped_column(String(64))
    balance_fen: Mapped[int | None] = mapped_column(Fen)
    description: Mapped[str | None] = mapped_column(Text)
    # Other authorities' measures on it, as the registry reported them (authority, amount, expiry).
    other_measures: Mapped[dict[str, Any] | None] = mapped_column()
    # A deposit's type or purpose as the bank names it (a code; models.exemptions says which are protected).
    purpose: Mapped[str | None] = mapped_column(String(32))
    first_query_id: Mapped[int | None] = mapped_column(ForeignKey("queries.id"))
    first_seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ControlMeasure(Base):
    """A freeze or seizure, written down (status `requested`, with its idempotency key) before the
    request leaves, and updated from the registry's reply."""

    __tablename__ = "control_measures"
    __table_args__ = (
        CheckConstraint(_one_of("kind", MEASURE_KINDS), name="kind"),
        CheckConstraint(_one_of("status", MEASURE_STATUSES), name="status"),
        CheckConstraint("requested_amount_fen >= 0", name="requested_nonneg"),
        CheckConstraint("actual_amount_fen IS NULL OR actual_amount_fen >= 0", name="actual_nonneg"),
        CheckConstraint(
            "expires_on IS NULL OR started_on IS NULL OR expires_on >= started_on", name="expiry_after_start"
        ),
        CheckConstraint("queue_position IS NULL OR queue_position >= 1", name="queue_position_positive"),
        Index("ix_control_measures_case_status", "case_id", "status"),
        # Answers are checked for freeze numbers another measure holds (control.record_replies).
        Index("ix_control_measures_registry_reference", "registry_id", "registry_reference"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id"), index=True)
    registry_id: Mapped[int] = mapped_column(ForeignKey("registries.id"))
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="requested")
    requested_amount_fen: Mapped[int] = mapped_column(Fen)
    actual_amount_fen: Mapped[int | None] = mapped_column(Fen)
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    registry_reference: Mapped[str | None] = mapped_column(String(128))
    started_on: Mapped[dt.date | None] = mapped_column(Date)
    expires_on: Mapped[dt.date | None] = mapped_column(Date, index=True)
    queue_position: Mapped[int | None] = mapped_column(Integer)
    renews_measure_id: Mapped[int | None] = mapped_column(ForeignKey("control_measures.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AuditEvent(Base):
    """One event of the append-only audit log (clerk.store.audit). It is written in the transaction that
    makes the change it records, with its own leaf hash and no place in the log yet; the sequencer
    (clerk.store.tree) gives it its `position`, once, and the triggers refuse every other change."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index(
            "ix_audit_events_unsequenced",
            "seq",
            sqlite_where=text("position IS NULL"),
            postgresql_where=text("position IS NULL"),
        ),
    )

    seq: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    position: Mapped[int | None] = mapped_column(Id, unique=True)  # its leaf in the tree, from 0
    occurred_at: Mapped[dt.datetime] = mapped_column()
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64), index=True)
    case_number: Mapped[str | None] = mapped_column(String(64), index=True)
    payload: Mapped[str] = mapped_column(Text)  # canonical JSON, personal data masked
    hash: Mapped[str] = mapped_column(String(64))  # RFC 9162 leaf hash of the event (audit.leaf_entry)
    salt: Mapped[str | None] = mapped_column(String(32))  # secret, in the leaf; None: log format v1


class AuditNode(Base):
    """A perfect subtree of the audit log's Merkle tree above the leaves: (level, index) covers leaves
    [index·2^level, (index+1)·2^level). Written once, when its last leaf is sequenced."""

    __tablename__ = "audit_nodes"

    level: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class AuditHead(Base):
    """A signed tree head: the log's size and root at a time, signed with the court's Ed25519 key
    (clerk.store.heads). Published heads let outsiders check the log never changed, only grew."""

    __tablename__ = "audit_heads"

    size: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=False)
    root: Mapped[str] = mapped_column(String(64))
    signed_at: Mapped[dt.datetime] = mapped_column()
    key_id: Mapped[str] = mapped_column(String(16))
    signature: Mapped[str] = mapped_column(String(128))
    index_root: Mapped[str | None] = mapped_column(String(64))  # the per-case index's root; None: head v1
    cases: Mapped[int | None] = mapped_column(Id)  # how many cases the index holds


class AuditCase(Base):
    """A case's entry in the audit log's per-case index (clerk.store.caseindex): its slot (the order cases
    first appear in the log), how many events it has under the latest signed head and the running hash over
    their leaves, started from its secret salt. Derived from the log; the signed heads' index roots commit
    to it and `clerk audit verify` rebuilds it."""

    __tablename__ = "audit_cases"

    case_number: Mapped[str] = mapped_column(String(64), primary_key=True)
    slot: Mapped[int] = mapped_column(Id, unique=True)
    events: Mapped[int] = mapped_column(Id)
    chain: Mapped[bytes] = mapped_column(LargeBinary(32))
    salt: Mapped[bytes] = mapped_column(LargeBinary(32))


class AuditIndexTile(Base):
    """Up to 1,024 perfect subtrees of one level of the per-case index's tree, 32 bytes each, in order:
    nodes [block·1024, (block+1)·1024) at `level` (level 0: the cases' entries). Rewritten when a case under
    them gains events (clerk.store.caseindex)."""

    __tablename__ = "audit_index_tiles"

    level: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    block: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=False)
    hashes: Mapped[bytes] = mapped_column(LargeBinary)


class MeasureAction(Base):
    """A renewal, release or deduction of a measure: written down (status `requested`, with its own
    idempotency key) before it is sent, like the measure itself, so that a crash never sends it twice."""

    __tablename__ = "measure_actions"
    __table_args__ = (
        CheckConstraint(_one_of("kind", ACTION_KINDS), name="kind"),
        CheckConstraint(_one_of("status", ACTION_STATUSES), name="status"),
        CheckConstraint("amount_fen IS NULL OR amount_fen > 0", name="amount_positive"),
        Index("ix_measure_actions_measure_kind_status", "measure_id", "kind", "status"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    measure_id: Mapped[int] = mapped_column(ForeignKey("control_measures.id"))
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="requested")
    amount_fen: Mapped[int | None] = mapped_column(Fen)  # release: part of the measure; deduct: what moves
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    reason: Mapped[str | None] = mapped_column(Text)  # why it was decided (no personal data)
    result: Mapped[dict[str, Any] | None] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    answered_at: Mapped[dt.datetime | None] = mapped_column()


class FeedCursor(Base):
    """How far the clerk has read a registry's push feed (deposits): resumes there after a restart."""

    __tablename__ = "feed_cursors"

    registry_id: Mapped[int] = mapped_column(ForeignKey("registries.id"), primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Notification(Base):
    """A message to a judge or an applicant (like the 12368 notices), written down before it is sent: its
    key makes the gateway deliver it once. `params` hold case numbers and amounts, never personal data."""

    __tablename__ = "notifications"
    __table_args__ = (
        CheckConstraint(_one_of("status", NOTIFICATION_STATUSES), name="status"),
        CheckConstraint("recipient IN ('judge', 'applicant')", name="recipient"),
        Index("ix_notifications_status", "status"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    recipient: Mapped[str] = mapped_column(String(16))
    template: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column()
    status: Mapped[str] = mapped_column(String(16), default="pending")
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column()


class NodeNotice(Base):
    """A node-deadline warning or alert, once per (case, node, subject, level): the scheduled check may run
    every few minutes without repeating itself."""

    __tablename__ = "node_notices"
    __table_args__ = (
        CheckConstraint(_one_of("node", NODES), name="node"),
        CheckConstraint(_one_of("level", NOTICE_LEVELS), name="level"),
        UniqueConstraint("case_id", "node", "subject", "level", name="uq_node_notices_once"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    node: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(String(64))  # which hit, measure or filing the deadline is about
    level: Mapped[str] = mapped_column(String(16))
    due_at: Mapped[dt.datetime] = mapped_column()
    noticed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


# --- case money (案款: clerk.money; the rules in models.money) ------------------------------------------

MONEY_ACCOUNTS = tuple(Account)
MONEY_ENTRY_KINDS = ("arrived", "split", "unidentified", "assigned", "to_return", "reversed")


class Subaccount(Base):
    """A case's virtual sub-account at the court's bank (一案一账号): the number comes from the bank, once,
    and is never given to another case."""

    __tablename__ = "money_subaccounts"

    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), primary_key=True, autoincrement=False)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    opened_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class StatementLine(Base):
    """An entry of the court's bank statement, recorded once by the bank's reference (append-only). The
    counterparty and the remittance text are personal data, masked wherever shown."""

    __tablename__ = "money_statement_lines"
    __table_args__ = (CheckConstraint("amount_fen > 0", name="amount_positive"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, index=True)  # the bank's sequence number
    reference: Mapped[str] = mapped_column(String(64), unique=True)
    booked_at: Mapped[dt.datetime] = mapped_column()
    value_date: Mapped[dt.date] = mapped_column(Date)
    amount_fen: Mapped[int] = mapped_column(Fen)
    credit: Mapped[bool] = mapped_column(Boolean)
    subaccount: Mapped[str | None] = mapped_column(String(32))
    reversal_of: Mapped[str | None] = mapped_column(String(64))
    counterparty_account: Mapped[str | None] = mapped_column(String(64))
    counterparty_name: Mapped[str | None] = mapped_column(String(200))
    remittance: Mapped[str] = mapped_column(Text, default="")
    recorded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class MoneyEntry(Base):
    """An entry of the case-money journal (append-only): what caused it (a statement line, a deduction, a
    person's decision with its reason), and its legs, which sum to zero."""

    __tablename__ = "money_entries"
    __table_args__ = (CheckConstraint(_one_of("kind", MONEY_ENTRY_KINDS), name="kind"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    line_id: Mapped[int | None] = mapped_column(ForeignKey("money_statement_lines.id"), index=True)
    action_id: Mapped[int | None] = mapped_column(ForeignKey("measure_actions.id"))
    actor: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class MoneyLeg(Base):
    """One leg of a journal entry: an account (of a case, or the bureau's) and fen, a debit when positive."""

    __tablename__ = "money_legs"
    __table_args__ = (
        CheckConstraint(_one_of("account", MONEY_ACCOUNTS), name="account"),
        CheckConstraint("fen <> 0", name="fen_nonzero"),
        Index("ix_money_legs_account_case", "account", "case_id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("money_entries.id"), index=True)
    account: Mapped[str] = mapped_column(String(16))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))
    fen: Mapped[int] = mapped_column(BigInteger)


class StatementCursor(Base):
    """How far the court's bank statement has been read (the bank's sequence): one row."""

    __tablename__ = "money_statement_cursor"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    position: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class DecisionCode(Base):
    """A one-time code sent to a person's phone to prove one decision (`models.proof`): sealed, never kept
    plain; what it is for (run, case, person, verdict, amount); used once; wrong tries counted against it."""

    __tablename__ = "decision_codes"
    __table_args__ = (Index("ix_decision_codes_person_issued", "person", "issued_at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    run: Mapped[str] = mapped_column(String(64), index=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    person: Mapped[str] = mapped_column(String(100))
    approve: Mapped[bool] = mapped_column(Boolean)
    amount_fen: Mapped[int] = mapped_column(Fen)
    salt: Mapped[bytes] = mapped_column(LargeBinary(16))
    sealed: Mapped[bytes] = mapped_column(LargeBinary(32))
    issued_at: Mapped[dt.datetime] = mapped_column()
    expires_at: Mapped[dt.datetime] = mapped_column()
    used_at: Mapped[dt.datetime | None] = mapped_column()
    tries: Mapped[int] = mapped_column(Integer, default=0)
    last_try_at: Mapped[dt.datetime | None] = mapped_column()
