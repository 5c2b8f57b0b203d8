"""The audit trail as a verifiable log (issue 22): events get positions from a sequencer instead of a hash
chain, the Merkle tree's perfect subtrees and the signed tree heads get tables of their own.

Today's chain becomes the first leaves of the tree, in its order, verified on the way: a broken chain
stops the migration before anything is written. The last event records the chain's head, so a head kept
under the old scheme is still tied to the new log. No head is signed here (the key belongs to the
sequencer): the next sequencer run signs one.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 23:50:00
"""

import datetime as dt
import hashlib
import json
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
from alembic import op

from clerk.store.migrations.append_only import create_append_only, drop_append_only

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

GENESIS = "0" * 64
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_BATCH = 5_000


def _utc(value: dt.datetime) -> str:
    aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return aware.astimezone(dt.UTC).isoformat(timespec="microseconds")


def _chain_hash(prev: str, seq: int, row: Any) -> str:
    """The hash chain of revisions 0001-0004, frozen here."""
    body = json.dumps(
        [prev, seq, _utc(row.occurred_at), row.actor, row.action, row.case_number, row.payload],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def _leaf(row: Any) -> bytes:
    """Log format v1's leaf (clerk.store.audit.leaf_entry), frozen here."""
    body = [_utc(row.occurred_at), row.actor, row.action, row.case_number, row.payload]
    entry = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(b"\x00" + entry).digest()


_V1 = sa.table(
    "audit_events",
    sa.column("seq", Id),
    sa.column("occurred_at", sa.DateTime()),
    *(sa.column(c, sa.Text()) for c in ("actor", "action", "case_number", "payload", "prev_hash", "hash")),
)


def _rows(conn: sa.Connection, *columns: str) -> Any:
    """The events in seq order, a batch at a time, with their timestamps read as datetimes."""
    last = 0
    while True:
        stmt = sa.select(_V1.c.seq, *(_V1.c[c] for c in columns)).where(_V1.c.seq > last)
        batch = conn.execute(stmt.order_by(_V1.c.seq).limit(_BATCH)).all()
        if not batch:
            return
        yield from batch
        last = batch[-1].seq


def upgrade() -> None:
    conn = op.get_bind()
    prev, count = GENESIS, 0
    for row in _rows(conn, "occurred_at", "actor", "action", "case_number", "payload", "prev_hash", "hash"):
        count += 1
        if row.seq != count or row.prev_hash != prev or _chain_hash(prev, row.seq, row) != row.hash:
            raise RuntimeError(
                f"the audit chain is broken at event {count}: nothing was migrated; "
                "check it with `clerk audit verify` of the release before this one"
            )
        prev = row.hash

    drop_append_only(conn, "audit_events")
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_constraint("uq_audit_events_hash", type_="unique")
        batch.drop_column("prev_hash")
        batch.add_column(sa.Column("position", Id, nullable=True))
        batch.create_unique_constraint("uq_audit_events_position", ["position"])
    op.create_index(
        "ix_audit_events_unsequenced",
        "audit_events",
        ["seq"],
        sqlite_where=sa.text("position IS NULL"),
        postgresql_where=sa.text("position IS NULL"),
    )
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("CREATE SEQUENCE audit_events_seq_seq OWNED BY audit_events.seq"))
        conn.execute(
            sa.text("ALTER TABLE audit_events ALTER COLUMN seq SET DEFAULT nextval('audit_events_seq_seq')")
        )
        conn.execute(
            sa.text(
                "SELECT setval('audit_events_seq_seq', "
                "COALESCE((SELECT max(seq) FROM audit_events), 0) + 1, false)"
            )
        )
    op.create_table(
        "audit_nodes",
        sa.Column("level", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("idx", Id, autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx", name=op.f("pk_audit_nodes")),
    )
    op.create_table(
        "audit_heads",
        sa.Column("size", Id, autoincrement=False, nullable=False),
        sa.Column("root", sa.String(length=64), nullable=False),
        sa.Column("signed_at", sa.DateTime(), nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column("signature", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("size", name=op.f("pk_audit_heads")),
    )

    # The chain's events, in its order, become the first leaves (the tree as models.merkle.Frontier grows it).
    edge: list[bytes] = []
    updates: list[dict[str, Any]] = []
    nodes: list[dict[str, Any]] = []
    events = sa.table("audit_events", sa.column("seq"), sa.column("position"), sa.column("hash"))
    node_table = sa.table("audit_nodes", sa.column("level"), sa.column("idx"), sa.column("hash"))

    def flush() -> None:
        if updates:
            conn.execute(
                events.update()
                .where(events.c.seq == sa.bindparam("b_seq"))
                .values(position=sa.bindparam("b_position"), hash=sa.bindparam("b_hash")),
                updates,
            )
        if nodes:
            conn.execute(node_table.insert(), nodes)
        updates.clear()
        nodes.clear()

    rows = _rows(conn, "occurred_at", "actor", "action", "case_number", "payload")
    for position, row in enumerate(rows):
        leaf = node = _leaf(row)
        updates.append({"b_seq": row.seq, "b_position": position, "b_hash": leaf.hex()})
        level = 0
        while position >> level & 1:
            node = hashlib.sha256(b"\x01" + edge.pop() + node).digest()
            level += 1
            nodes.append({"level": level, "idx": position >> level, "hash": node})
        edge.append(node)
        if len(updates) >= _BATCH:
            flush()
    flush()

    if count:
        event = {
            "occurred_at": dt.datetime.now(dt.UTC).replace(tzinfo=None),
            "actor": "system",
            "action": "audit.chain_migrated",
            "case_number": None,
            "payload": json.dumps({"chain_head": prev, "events": count}, sort_keys=True),
        }
        leaf = _leaf(SimpleNamespace(**event))
        conn.execute(
            sa.table("audit_events", *(sa.column(k) for k in [*event, "hash"])).insert(),
            [{**event, "hash": leaf.hex()}],
        )

    create_append_only(conn, "audit_events", set_once="position")
    create_append_only(conn, "audit_nodes")
    create_append_only(conn, "audit_heads")


def downgrade() -> None:
    """Back to the hash chain, in the log's order (placed events first, then the rest by seq); the tree
    and the signed heads are dropped."""
    conn = op.get_bind()
    for name in ("audit_heads", "audit_nodes", "audit_events"):
        drop_append_only(conn, name)
    op.drop_table("audit_heads")
    op.drop_table("audit_nodes")
    placed = sa.table(
        "audit_events",
        sa.column("seq", Id),
        sa.column("position", Id),
        sa.column("occurred_at", sa.DateTime()),
        *(sa.column(c, sa.Text()) for c in ("actor", "action", "case_number", "payload")),
    )
    rows = conn.execute(
        sa.select(
            *(placed.c[c] for c in ("occurred_at", "actor", "action", "case_number", "payload"))
        ).order_by(placed.c.position.is_(None), placed.c.position, placed.c.seq)
    ).all()
    op.drop_table("audit_events")
    op.create_table(
        "audit_events",
        sa.Column("seq", Id, autoincrement=False, nullable=False),
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
    op.create_index(op.f("ix_audit_events_action"), "audit_events", ["action"], unique=False)
    op.create_index(op.f("ix_audit_events_case_number"), "audit_events", ["case_number"], unique=False)
    table = sa.table(
        "audit_events",
        *(
            sa.column(c)
            for c in ("seq", "occurred_at", "actor", "action", "case_number", "payload", "prev_hash", "hash")
        ),
    )
    prev, chained = GENESIS, []
    for seq, row in enumerate(rows, start=1):
        digest = _chain_hash(prev, seq, row)
        chained.append({"seq": seq, **row._asdict(), "prev_hash": prev, "hash": digest})
        prev = digest
    if chained:
        conn.execute(table.insert(), chained)
    create_append_only(conn, "audit_events")
