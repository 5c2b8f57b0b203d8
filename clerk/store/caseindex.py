"""The audit log's per-case index (issue 41): what lets a case's export prove it is complete.

Every case that has events in the log holds a leaf of a second Merkle tree, in the order cases first appear
in the log (a slot). The leaf commits to the case number, how many events the case has and a running hash
over their leaf hashes in log order, started from a secret salt of the case's own (models.merkle.CaseIndex
says how). A v2 signed head carries the tree's root and its number of cases, so an export that shows its
case's entry with an inclusion proof under the head, and events that rebuild that entry, holds every event
of the case up to the head, in order, and nothing else.

The sequencer advances the index when it signs a head, in that head's transaction (`advance`): it reads the
events placed since the last v2 head, updates the cases they touch (`audit_cases`) and the tree's perfect
subtrees above them (`audit_index_nodes`), and returns the root to sign. The tables are derived data, not
append-only: what guards them is the signed root, and `clerk audit verify` rebuilds them from the log.
The first v2 head builds the index from the log's first event.
"""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from clerk.store import db
from models import merkle
from models.tables import AuditCase, AuditEvent, AuditHead, AuditIndexNode

#: How many placed events `advance` reads at a time.
BATCH = 50_000


class TreeError(RuntimeError):
    """The stored trees cannot give what was asked: a node is missing, or there is no such head."""


_cases = db.table(AuditCase)
_nodes = db.table(AuditIndexNode)


def indexed_size(session: Session) -> int:
    """How many of the log's events the index holds: the size of the latest head that carries one."""
    return session.scalar(select(func.max(AuditHead.size)).where(AuditHead.index_root.is_not(None))) or 0


def advance(session: Session, size: int) -> tuple[bytes, int]:
    """Bring the index to the log's first `size` events; its root and number of cases, to sign."""
    start = indexed_size(session)
    count = session.scalar(select(func.count()).select_from(AuditCase)) or 0
    touched: dict[str, merkle.CaseState] = {}
    while start < size:
        end = min(start + BATCH, size)
        rows = session.execute(
            select(AuditEvent.case_number, AuditEvent.hash)
            .where(
                AuditEvent.position >= start,
                AuditEvent.position < end,
                AuditEvent.case_number.is_not(None),
            )
            .order_by(AuditEvent.position)
        ).all()
        unknown = sorted({case for case, _ in rows} - touched.keys())
        for part in db.chunks(unknown):
            known = select(
                AuditCase.case_number, AuditCase.slot, AuditCase.events, AuditCase.chain, AuditCase.salt
            ).where(db.among(session, AuditCase.case_number, part))
            for case, slot, events, chain, salt in session.execute(known):
                touched[case] = merkle.CaseState(slot, bytes(salt), events, bytes(chain))
        for case, leaf in rows:
            state = touched.get(case)
            if state is None:
                state = touched[case] = merkle.CaseState(count, secrets.token_bytes(32))
                count += 1
            state.events += 1
            state.chain = merkle.chain_next(state.chain, bytes.fromhex(leaf))
        start = end
    db.upsert(
        session,
        _cases,
        ("case_number", "slot", "events", "chain", "salt"),
        ("case_number",),
        [(c, s.slot, s.events, s.chain, s.salt) for c, s in touched.items()],
    )
    changed = {s.slot: s.leaf(c) for c, s in touched.items()}
    stored = read_nodes(session, merkle.refresh_needs(count, changed))
    fresh = merkle.refresh(count, changed, stored)
    db.upsert(
        session,
        _nodes,
        ("level", "idx", "hash"),
        ("level", "idx"),
        [(level, idx, h) for (level, idx), h in fresh.items()],
    )
    return merkle.fold_root(count, {**stored, **fresh}), count


def read_nodes(session: Session, coords: set[merkle.Coord]) -> dict[merkle.Coord, bytes]:
    found: dict[merkle.Coord, bytes] = {}
    by_level: dict[int, list[int]] = {}
    for level, idx in coords:
        by_level.setdefault(level, []).append(idx)
    for level, indexes in by_level.items():
        for part in db.chunks(sorted(indexes), db.IN_LIST):
            rows = session.execute(
                select(AuditIndexNode.idx, AuditIndexNode.hash).where(
                    AuditIndexNode.level == level, db.among(session, AuditIndexNode.idx, part)
                )
            )
            found.update(((level, idx), bytes(h)) for idx, h in rows)
    missing = coords - found.keys()
    if missing:
        level, idx = min(missing)
        raise TreeError(f"the per-case index's node ({level}, {idx}) is missing: run `clerk audit verify`")
    return found


def entry(session: Session, case_number: str, cases: int) -> dict[str, Any] | None:
    """The case's index entry and its inclusion proof in the index of `cases` cases (the latest v2 head's):
    what an export shows to prove it complete. None if the case has no event in the index."""
    row = session.get(AuditCase, case_number)
    if row is None or row.slot >= cases:
        return None
    ranges = merkle.inclusion_ranges(row.slot, cases)
    nodes = read_nodes(session, merkle.needed(ranges))
    return {
        "slot": row.slot,
        "cases": cases,
        "events": row.events,
        "salt": bytes(row.salt).hex(),
        "chain": bytes(row.chain).hex(),
        "inclusion_proof": [h.hex() for h in merkle.hashes(ranges, nodes)],
    }


def salts(session: Session) -> dict[str, bytes]:
    """Every indexed case's salt: what a replay of the log needs to rebuild the index."""
    rows = session.execute(select(AuditCase.case_number, AuditCase.salt).execution_options(yield_per=50_000))
    return {case: bytes(salt) for case, salt in rows}


def stored_states(session: Session) -> dict[str, tuple[int, int, bytes]]:
    """Every indexed case as stored: (slot, events, running hash)."""
    rows = session.execute(
        select(AuditCase.case_number, AuditCase.slot, AuditCase.events, AuditCase.chain).execution_options(
            yield_per=50_000
        )
    )
    return {case: (slot, events, bytes(chain)) for case, slot, events, chain in rows}
