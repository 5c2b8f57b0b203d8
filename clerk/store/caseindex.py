"""The audit log's per-case index (issue 41): what lets a case's export prove it is complete.

Every case that has events in the log holds a leaf of a second Merkle tree, in the order cases first appear
in the log (a slot). The leaf commits to the case number, how many events the case has and a running hash
over their leaf hashes in log order, started from a secret salt of the case's own (models.merkle.CaseIndex
says how). A v2 signed head carries the tree's root and its number of cases, so an export that shows its
case's entry with an inclusion proof under the head, and events that rebuild that entry, holds every event
of the case up to the head, in order, and nothing else.

The sequencer advances the index when it signs a head, in that head's transaction (`advance`): it reads the
events placed since the last v2 head, updates the cases they touch (`audit_cases`) and the tree's perfect
subtrees above them (`audit_index_tiles`: a row holds up to 1,024 nodes of one level, as transparency-dev's
tiled logs store theirs, so that a head's update reads and writes a few thousand rows, not a few hundred
thousand), and returns the root to sign. The tables are derived data, not
append-only: what guards them is the signed root, and `clerk audit verify` rebuilds them from the log.
The first v2 head builds the index from the log's first event.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from clerk.store import collector, db
from models import merkle
from models.tables import AuditCase, AuditEvent, AuditHead, AuditIndexTile

#: How many placed events `advance` reads at a time.
BATCH = 50_000


class TreeError(RuntimeError):
    """The stored trees cannot give what was asked: a node is missing, or there is no such head."""


_cases = db.table(AuditCase)
_tiles = db.table(AuditIndexTile)


def indexed_size(session: Session) -> int:
    """How many of the log's events the index holds: the size of the latest head that carries one."""
    return session.scalar(select(func.max(AuditHead.size)).where(AuditHead.index_root.is_not(None))) or 0


def advance(session: Session, size: int) -> tuple[bytes, int]:
    """Bring the index to the log's first `size` events; its root and number of cases, to sign."""
    with collector.tuned_for_bulk():
        return _advance(session, size)


def _advance(session: Session, size: int) -> tuple[bytes, int]:
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
    tiles = _read_tiles(session, _tiles_under(count, changed))
    fresh = merkle.refresh(count, changed, _Nodes(tiles))
    for (level, idx), h in sorted(fresh.items()):  # in order: a tile grows at its end only
        tile = tiles.setdefault((level, idx // TILE), bytearray())
        at = (idx % TILE) * 32
        if len(tile) < at:
            raise TreeError(
                f"the per-case index's tile ({level}, {idx // TILE}) is short: run `clerk audit verify`"
            )
        tile[at : at + 32] = h
    written = {(level, idx // TILE) for level, idx in fresh}
    db.upsert(
        session,
        _tiles,
        ("level", "block", "hashes"),
        ("level", "block"),
        [(level, block, bytes(tiles[(level, block)])) for level, block in sorted(written)],
    )
    return merkle.fold_root(count, _Nodes(tiles)), count


#: Node hashes per stored row: a row holds nodes [block·TILE, (block+1)·TILE) of one level, 32 bytes each.
TILE = 1024


def _tiles_under(size: int, changed: dict[int, bytes]) -> set[tuple[int, int]]:
    """The tiles `merkle.refresh` reads and rewrites when these leaves change, and those of the right edge
    the root folds: at each level the tiles over the changed leaves (a node's sibling shares its tile),
    then the edge's. Computed tile by tile, not node by node: above level 0 there are few."""
    tiles, blocks, level = set[tuple[int, int]](), {slot // TILE for slot in changed}, 0
    while size >> level:
        tiles.update((level, block) for block in blocks)
        blocks, level = {block >> 1 for block in blocks}, level + 1
    tiles.update((level, idx // TILE) for level, idx in merkle.Frontier.coords(size))
    return tiles


class _Nodes(Mapping[merkle.Coord, bytes]):
    """The index's perfect subtrees read from their tiles: what models.merkle folds and refreshes from."""

    def __init__(self, tiles: dict[tuple[int, int], bytearray]) -> None:
        self.tiles = tiles

    def __getitem__(self, coord: merkle.Coord) -> bytes:
        level, idx = coord
        tile = self.tiles.get((level, idx // TILE))
        at = (idx % TILE) * 32
        if tile is None or len(tile) < at + 32:
            raise KeyError(coord)
        return bytes(tile[at : at + 32])

    def __iter__(self) -> Iterator[merkle.Coord]:
        for (level, block), tile in self.tiles.items():
            yield from ((level, block * TILE + i) for i in range(len(tile) // 32))

    def __len__(self) -> int:
        return sum(len(tile) // 32 for tile in self.tiles.values())


def _read_tiles(session: Session, which: set[tuple[int, int]]) -> dict[tuple[int, int], bytearray]:
    """These tiles, (level, block), those that exist."""
    wanted: dict[int, set[int]] = {}
    for level, block in which:
        wanted.setdefault(level, set()).add(block)
    tiles: dict[tuple[int, int], bytearray] = {}
    for level, blocks in wanted.items():
        for part in db.chunks(sorted(blocks)):
            rows = session.execute(
                select(AuditIndexTile.block, AuditIndexTile.hashes).where(
                    AuditIndexTile.level == level, db.among(session, AuditIndexTile.block, part)
                )
            )
            tiles.update(((level, block), bytearray(hashes)) for block, hashes in rows)
    return tiles


def read_nodes(session: Session, coords: set[merkle.Coord]) -> dict[merkle.Coord, bytes]:
    """The stored hashes of these perfect subtrees of the index."""
    nodes = _Nodes(_read_tiles(session, {(level, idx // TILE) for level, idx in coords}))
    try:
        return {c: nodes[c] for c in coords}
    except KeyError as exc:
        level, idx = exc.args[0]
        raise TreeError(
            f"the per-case index's node ({level}, {idx}) is missing: run `clerk audit verify`"
        ) from None


def stored_nodes(session: Session) -> Iterator[tuple[merkle.Coord, bytes]]:
    """Every stored node of the index, tile by tile."""
    rows = session.execute(
        select(AuditIndexTile.level, AuditIndexTile.block, AuditIndexTile.hashes).execution_options(
            yield_per=64
        )
    )
    for level, block, hashes in rows:
        for i in range(len(hashes) // 32):
            yield (level, block * TILE + i), bytes(hashes[i * 32 : i * 32 + 32])


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
