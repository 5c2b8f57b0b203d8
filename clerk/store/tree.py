"""The audit log's sequencer, and everything read off its Merkle tree: heads, proofs, verification.

Writers append events with no position (clerk.store.audit). The sequencer, one at a time (a PostgreSQL
advisory lock that only it takes; SQLite's single writer), places committed events in batches: each gets
the next position, the perfect subtrees it completes are stored (audit_nodes), and at the end of a run the
tree head is signed (clerk.store.heads). Events committed after a run began, or not placed before a crash,
are simply still unplaced: the next run places them. Nothing is placed twice: a position is set once (the
triggers refuse any other change) and positions are unique.

`verify` walks the log in position order and checks every event's hash against its content, every stored
node against the events under it, and every signed head (its root at its size, and its signature); a head
someone kept elsewhere is checked the same way. `case_export` writes a case's events with an inclusion proof
each against the latest signed head, which heads.check_export checks with no database.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import and_, bindparam, func, insert, or_, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from clerk.settings import Settings
from clerk.store import audit, caseindex, db
from clerk.store.caseindex import TreeError as TreeError
from clerk.store.heads import (
    CONSISTENCY_FORMAT,
    EXPORT_FORMAT,
    HeadError,
    KeptHead,
    SignedHead,
    signing_key,
)
from models import merkle
from models.tables import AuditEvent, AuditHead, AuditNode, utcnow

LEAF_DESCRIPTION = (
    "SHA-256(0x00 || JSON [salt, occurred_at, actor, action, case_number, payload], UTF-8, no spaces); "
    "an event with no salt (log format v1): JSON [occurred_at, actor, action, case_number, payload]"
)
_SEQUENCER_LOCK = 0x73657175  # "sequ": taken by the sequencer only, never by a writer
BATCH = 10_000

_events = db.table(AuditEvent)
_nodes = db.table(AuditNode)


@dataclass(frozen=True, slots=True)
class Sequenced:
    placed: int
    size: int
    head: SignedHead | None


def sequence(
    sessions: sessionmaker[Session],
    key: Ed25519PrivateKey | None,
    *,
    batch: int = BATCH,
    now: dt.datetime | None = None,
) -> Sequenced:
    """Place every committed event not yet in the log, a batch per transaction, then sign the tree head
    (with `key`; None places without signing)."""
    placed = 0
    while True:
        with sessions.begin() as session:
            count = _place(session, batch)
        placed += count
        if count < batch:
            break
    with sessions.begin() as session:
        _lock(session)
        size = log_size(session)
        head = _sign(session, key, size, now or utcnow()) if key is not None else None
    return Sequenced(placed, size, head)


def seal(sessions: sessionmaker[Session], settings: Settings) -> Sequenced:
    """`sequence` with this installation's signing key (its signing key): what the sequencer deployment,
    the daily report, the demo and `clerk audit sequence` and `export` run."""
    return sequence(sessions, signing_key(settings))


def _lock(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SEQUENCER_LOCK})


def log_size(session: Session) -> int:
    last = session.scalar(select(func.max(AuditEvent.position)))
    return 0 if last is None else last + 1


def _place(session: Session, batch: int) -> int:
    _lock(session)
    pending = session.execute(
        select(AuditEvent.seq, AuditEvent.hash)
        .where(AuditEvent.position.is_(None))
        .order_by(AuditEvent.seq)
        .limit(batch)
    ).all()
    if not pending:
        return 0
    size = log_size(session)
    frontier = merkle.Frontier.of(size, read_nodes(session, merkle.Frontier.coords(size)))
    positions: list[dict[str, int]] = []
    nodes: list[dict[str, Any]] = []
    for seq, leaf in pending:
        completed = frontier.append(bytes.fromhex(leaf))
        positions.append({"b_seq": seq, "b_position": frontier.size - 1})
        nodes.extend({"level": level, "idx": idx, "hash": h} for (level, idx), h in completed if level)
    session.execute(
        update(_events).where(_events.c.seq == bindparam("b_seq")).values(position=bindparam("b_position")),
        positions,
    )
    if nodes:
        session.execute(insert(_nodes), nodes)
    return len(pending)


def _sign(session: Session, key: Ed25519PrivateKey, size: int, now: dt.datetime) -> SignedHead | None:
    latest = latest_head(session)
    if size == 0 or (latest is not None and latest.size == size):
        return latest
    root = merkle.Frontier.of(size, read_nodes(session, merkle.Frontier.coords(size))).root()
    head = SignedHead.sign(key, size, root, now, caseindex.advance(session, size))
    session.add(
        AuditHead(
            size=head.size,
            root=head.root,
            signed_at=dt.datetime.fromisoformat(head.signed_at),
            key_id=head.key_id,
            signature=head.signature,
            index_root=head.index_root,
            cases=head.cases,
        )
    )
    return head


def _head(row: AuditHead) -> SignedHead:
    signed_at = row.signed_at.astimezone(dt.UTC).isoformat(timespec="seconds")
    return SignedHead(row.size, row.root, signed_at, row.key_id, row.signature, row.index_root, row.cases)


def latest_head(session: Session) -> SignedHead | None:
    row = session.scalars(select(AuditHead).order_by(AuditHead.size.desc()).limit(1)).first()
    return None if row is None else _head(row)


def head_at(session: Session, size: int) -> SignedHead:
    row = session.get(AuditHead, size)
    if row is None:
        raise TreeError(f"no signed head of {size} event(s): `clerk audit heads` lists them")
    return _head(row)


def heads(session: Session) -> list[SignedHead]:
    return [_head(row) for row in session.scalars(select(AuditHead).order_by(AuditHead.size))]


def read_nodes(session: Session, coords: Iterable[merkle.Coord]) -> dict[merkle.Coord, bytes]:
    """The stored hashes of these perfect subtrees: leaves from the events, the rest from audit_nodes."""
    wanted = set(coords)
    found: dict[merkle.Coord, bytes] = {}
    leaves = sorted(idx for level, idx in wanted if level == 0)
    for positions in db.chunks(leaves):
        for position, leaf in session.execute(
            select(AuditEvent.position, AuditEvent.hash).where(AuditEvent.position.in_(positions))
        ):
            found[(0, position)] = bytes.fromhex(leaf)
    inner = sorted(c for c in wanted if c[0])
    for coords_chunk in db.chunks(inner, 400):
        match = or_(*(and_(AuditNode.level == level, AuditNode.idx == idx) for level, idx in coords_chunk))
        for level, idx, h in session.execute(
            select(AuditNode.level, AuditNode.idx, AuditNode.hash).where(match)
        ):
            found[(level, idx)] = bytes(h)
    missing = wanted - found.keys()
    if missing:
        level, idx = min(missing)
        raise TreeError(f"the tree's node ({level}, {idx}) is missing: run `clerk audit verify`")
    return found


def _nodes_completed_in(session: Session, start: int, end: int) -> dict[merkle.Coord, bytes]:
    """The stored nodes whose last leaf lies in [start, end): node (L, i) ends at leaf (i+1)·2^L − 1."""
    ranges = []
    for level in range(1, end.bit_length() + 1):
        low, high = -(-(start + 1) >> level) - 1, (end >> level) - 1
        if high >= low:
            ranges.append(and_(AuditNode.level == level, AuditNode.idx.between(low, high)))
    if not ranges:
        return {}
    rows = session.execute(select(AuditNode.level, AuditNode.idx, AuditNode.hash).where(or_(*ranges)))
    return {(level, idx): bytes(h) for level, idx, h in rows}


def _proofs(session: Session, ranges: list[list[merkle.Range]]) -> list[list[str]]:
    nodes = read_nodes(session, merkle.needed(r for path in ranges for r in path))
    return [[h.hex() for h in merkle.hashes(path, nodes)] for path in ranges]


def consistency_proof(session: Session, old: int, new: int) -> list[str]:
    return _proofs(session, [merkle.consistency_ranges(old, new)])[0]


def consistency_document(session: Session, old: SignedHead, new: SignedHead) -> dict[str, Any]:
    return {
        "format": CONSISTENCY_FORMAT,
        "old": old.as_dict(),
        "new": new.as_dict(),
        "proof": consistency_proof(session, old.size, new.size),
    }


def case_export(
    session: Session, case_number: str, head: SignedHead, since: KeptHead | None = None
) -> dict[str, Any]:
    """A case's events placed under `head`, each with its inclusion proof; with `since`, a consistency
    proof from that kept head to this one. Under the latest head with a per-case index, also the case's
    index entry with its proof: what proves the export complete (clerk.store.caseindex)."""
    _lock(session)  # no head is signed while the events, the head and the index entry are read
    rows = (
        session.execute(
            select(AuditEvent)
            .where(AuditEvent.case_number == case_number, AuditEvent.position < head.size)
            .order_by(AuditEvent.position)
        )
        .scalars()
        .all()
    )
    paths = _proofs(session, [merkle.inclusion_ranges(e.position or 0, head.size) for e in rows])
    later = session.scalar(
        select(func.count())
        .select_from(AuditEvent)
        .where(
            AuditEvent.case_number == case_number,
            or_(AuditEvent.position.is_(None), AuditEvent.position >= head.size),
        )
    )
    document: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "case_number": case_number,
        "head": head.as_dict(),
        "leaf": LEAF_DESCRIPTION,
        "events": [
            {
                "position": e.position,
                **({"salt": e.salt} if e.salt is not None else {}),
                "occurred_at": audit.timestamp(e.occurred_at),
                "actor": e.actor,
                "action": e.action,
                "case_number": e.case_number,
                "payload": e.payload,
                "leaf_hash": e.hash,
                "inclusion_proof": path,
            }
            for e, path in zip(rows, paths, strict=True)
        ],
        "events_after_head": later or 0,
    }
    if head.cases is not None and caseindex.indexed_size(session) == head.size:
        document["index"] = caseindex.entry(session, case_number, head.cases)
    if since is not None:
        if since.size > head.size:
            raise HeadError(
                f"--since: the kept head of {since.size} is newer than the log's head of {head.size}"
            )
        document["consistency"] = {
            "from_size": since.size,
            "proof": consistency_proof(session, since.size, head.size),
        }
    return document


@dataclass(frozen=True, slots=True)
class Verification:
    events: int  # all of them, placed or not
    placed: int
    heads: int
    root: str
    broken_at: int | None = None  # a position in the log
    reason: str | None = None
    indexed: int = 0  # how many signed heads' per-case index roots were rebuilt and matched
    cases: int = 0  # how many cases the rebuilt index holds

    @property
    def ok(self) -> bool:
        return self.reason is None

    @property
    def pending(self) -> int:
        return self.events - self.placed


def verify(
    session: Session,
    public: Ed25519PublicKey | None = None,
    kept: KeptHead | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Verification:
    """Check the whole log; stop at the first thing that does not hold and name it. Without `public` the
    heads' roots are checked but not their signatures. `progress(checked, size)` after each batch."""
    signed = heads(session)
    checks: list[tuple[int, str, str]] = [(h.size, h.root, f"the signed head of {h.size}") for h in signed]
    if kept is not None:
        checks.append((kept.size, kept.root, f"the kept head of {kept.size}"))
    checks.sort()
    indexed_heads = {h.size: h for h in signed if h.index_root is not None}
    indexed = max(indexed_heads, default=0)
    case_salts = caseindex.salts(session) if indexed else {}
    index = merkle.CaseIndex()
    frontier, nodes_seen = merkle.Frontier(), 0

    def broken(at: int | None, reason: str) -> Verification:
        total = session.scalar(select(func.count()).select_from(AuditEvent)) or 0
        return Verification(total, frontier.size, len(signed), frontier.root().hex(), at, reason)

    if public is not None:
        for head in signed:
            try:
                head.check(public)
            except HeadError as exc:
                return broken(head.size, str(exc))
    start, in_log = 0, log_size(session)
    while True:
        if progress is not None:
            progress(min(start, in_log), in_log)
        rows = (
            session.execute(
                select(AuditEvent)
                .where(AuditEvent.position >= start, AuditEvent.position < start + BATCH)
                .order_by(AuditEvent.position)
            )
            .scalars()
            .all()
        )
        if not rows:
            beyond = session.scalar(select(func.min(AuditEvent.position)).where(AuditEvent.position >= start))
            if beyond is None:
                break
            return broken(start, f"events at positions {start} to {beyond - 1} are missing")
        stored = _nodes_completed_in(session, start, start + BATCH)
        for event in rows:
            at = frontier.size
            if event.position != at:
                return broken(
                    at, f"the event at position {at} is missing (the next one is at {event.position})"
                )
            if not audit.intact(event):
                return broken(
                    at, f"event {at} (seq {event.seq}): its content does not match its hash (edited)"
                )
            leaf = bytes.fromhex(event.hash)
            if event.case_number is not None and at < indexed:
                salt = case_salts.get(event.case_number)
                if salt is None:
                    return broken(at, f"event {at}: its case has no entry in the per-case index")
                index.add(event.case_number, leaf, salt)
            for (level, idx), h in frontier.append(leaf)[1:]:
                if stored.get((level, idx)) != h:
                    first = idx << level
                    what = (
                        "is missing"
                        if (level, idx) not in stored
                        else "does not match them (edited, moved or replaced)"
                    )
                    return broken(first, f"the tree's node over events {first} to {at} {what}")
                nodes_seen += 1
            while checks and checks[0][0] == frontier.size:
                size, root, what = checks.pop(0)
                if frontier.root().hex() != root:
                    return broken(size - 1, f"the log's first {size} event(s) do not match {what} (changed)")
            at_head = indexed_heads.get(frontier.size)
            if at_head is not None and (index.size, index.root().hex()) != (
                at_head.cases,
                at_head.index_root,
            ):
                return broken(
                    at_head.size - 1,
                    f"the per-case index of the signed head of {at_head.size} is not the one its events "
                    f"make ({at_head.cases} case(s) signed, {index.size} in the log)",
                )
        start += BATCH
    if checks:
        size, _, what = checks[0]
        return broken(
            frontier.size, f"the log holds {frontier.size} event(s), fewer than {what}: events were cut"
        )
    extra = (session.scalar(select(func.count()).select_from(AuditNode)) or 0) - nodes_seen
    if extra:
        return broken(frontier.size, f"the tree holds {extra} node(s) over no events (inserted)")
    if indexed:
        problem = _stored_index_problem(session, index)
        if problem is not None:
            return broken(None, problem)
    unplaced = select(AuditEvent).where(AuditEvent.position.is_(None)).execution_options(yield_per=BATCH)
    for event in session.scalars(unplaced):
        if not audit.intact(event):
            return broken(
                None, f"event seq {event.seq}, not yet placed: its content does not match its hash (edited)"
            )
    total = session.scalar(select(func.count()).select_from(AuditEvent)) or 0
    return Verification(
        total, frontier.size, len(signed), frontier.root().hex(), indexed=len(indexed_heads), cases=index.size
    )


def _stored_index_problem(session: Session, index: merkle.CaseIndex) -> str | None:
    """What differs between the per-case index as stored (what exports read) and as the log rebuilds it."""
    index.root()
    stored = caseindex.stored_states(session)
    for case, state in index.cases.items():
        if stored.pop(case, None) != (state.slot, state.events, state.chain):
            return f"the stored per-case index's case in slot {state.slot} is not the log's: exports fail"
    if stored:
        return f"the stored per-case index holds {len(stored)} case(s) with no events in the log"
    seen = 0
    for (level, idx), h in caseindex.stored_nodes(session):
        seen += 1
        if index.nodes.get((level, idx)) != h:
            return f"the stored per-case index's node ({level}, {idx}) is not the log's: exports fail"
    if seen != len(index.nodes):
        return f"the stored per-case index lacks {len(index.nodes) - seen} node(s): exports fail"
    return None
