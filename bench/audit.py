"""The audit log (clerk.store.audit, clerk.store.tree): what appending, sequencing, verifying and proving
cost, on SQLite and on PostgreSQL (a throwaway durable server), in one process.

Events are appended as a sweep appends them (in transactions of `PER_TRANSACTION`, payloads like a hit's);
then the sequencer places them all and signs the head, `verify` walks the whole log, and one case's export
proves each of its events. The figures say whether the sequencer keeps up with a sweep (a 1,000,000-debtor
first sweep writes ~4,000,000 events in under 30 minutes, ~2,200 a second) and what a supervising court's
check of the whole log costs.

`index` measures the per-case index (issue 41) where it costs: a log of `cases` cases and ten events each,
then a head a minute at the 1,000,000-debtor sweep's rate (`PER_HEAD` events, four to a case, on cases drawn
at random, the worst order for the index's tree), each head's signing timed apart from placing its events
(placing is the log's work with or without the index). Its goal: under 10 % of a core, i.e. each head's
index work under 6 s of the minute.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.common import record, table
from clerk.store import audit, db, heads, tree

PER_TRANSACTION = 500
CASES = 1_000

#: A 1,000,000-debtor first sweep appends ~4,000,000 events in 30 minutes: ~132,000 a minute.
PER_HEAD = 132_000
EVENTS_PER_CASE = 10


def _append(sessions: Any, numbers: list[int], per_transaction: int = 10_000) -> None:
    """An event like a hit's for case n + 1 for each n, `per_transaction` to a transaction."""
    for first in range(0, len(numbers), per_transaction):
        with sessions.begin() as session:
            audit.append_many(
                session,
                [
                    audit.Entry(
                        "asset.found",
                        "flow-run:bench",
                        f"（2026）豫0185执{n + 1}号",
                        {"registry": "bank-a", "kind": "deposit", "account": "****0014"},
                    )
                    for n in numbers[first : first + per_transaction]
                ],
            )


def _measure(url: str, events: int) -> dict[str, Any]:
    engine = db.make_engine(url)
    db.upgrade(engine)
    sessions = db.session_factory(engine)
    key = Ed25519PrivateKey.generate()
    started = time.perf_counter()
    _append(sessions, [n % CASES for n in range(events)], PER_TRANSACTION)
    appended = time.perf_counter() - started
    started = time.perf_counter()
    done = tree.sequence(sessions, key)
    sequenced = time.perf_counter() - started
    started = time.perf_counter()
    with sessions() as session:
        result = tree.verify(session, key.public_key())
    verified = time.perf_counter() - started
    assert result.ok and done.head is not None, result.reason
    started = time.perf_counter()
    with sessions() as session:
        document = tree.case_export(session, "（2026）豫0185执1号", done.head)
    exported = time.perf_counter() - started
    started = time.perf_counter()
    check = heads.check_export(document, key.public_key())
    checked = time.perf_counter() - started
    assert check.ok and check.complete, check.problems
    engine.dispose()
    return {
        "database": url.split(":", 1)[0].split("+", 1)[0],
        "events": events,
        "append /s": round(events / appended),
        "sequence /s": round(done.placed / sequenced),
        "verify /s": round(events / verified),
        "case events": len(document["events"]),
        "export s": round(exported, 3),
        "check-export s": round(checked, 3),
    }


def _index(url: str, cases: int, heads_timed: int, per_head: int) -> dict[str, Any]:
    engine = db.make_engine(url)
    db.upgrade(engine)
    sessions = db.session_factory(engine)
    key = Ed25519PrivateKey.generate()
    events = cases * EVENTS_PER_CASE
    started = time.perf_counter()
    for round_ in range(EVENTS_PER_CASE):
        _append(sessions, list(range(cases)))
        print(f"  {url.split(':', 1)[0]}: {(round_ + 1) * cases:,} of {events:,} events appended", flush=True)
        tree.sequence(sessions, None)
    built_log = time.perf_counter() - started
    started = time.perf_counter()
    tree.sequence(sessions, key)  # the first head with an index builds it from the log's first event
    built_index = time.perf_counter() - started
    rng = random.Random(41)
    walls, cpus = [], []
    for _ in range(heads_timed):
        touched = rng.sample(range(cases), per_head // 4)
        _append(sessions, [n for n in touched for _ in range(4)])
        tree.sequence(sessions, None)
        wall, cpu = time.perf_counter(), time.process_time()
        done = tree.sequence(sessions, key)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    assert done.head is not None and done.head.cases == cases
    started = time.perf_counter()
    with sessions() as session:
        document = tree.case_export(session, "（2026）豫0185执1号", done.head)
    exported = time.perf_counter() - started
    check = heads.check_export(document, key.public_key())
    assert check.ok and check.complete, check.problems
    engine.dispose()
    wall = statistics.median(walls)
    return {
        "database": url.split(":", 1)[0].split("+", 1)[0],
        "cases": cases,
        "events": events + heads_timed * per_head,
        "log built s": round(built_log),
        "index built s": round(built_index, 1),
        "events/head": per_head,
        "head s (median)": round(wall, 2),
        "head CPU s": round(statistics.median(cpus), 2),
        "% of a core": round(100 * wall / 60, 1),
        "export s": round(exported, 3),
    }


def index(
    quick: bool = False, sizes: list[int] | None = None, databases: tuple[str, ...] = ("sqlite",)
) -> None:
    """The per-case index at `sizes` cases (default 1,000,000; quick 2,000), a head a minute."""
    from deployments.pgserver import postgres_server

    rows = []
    for cases in sizes or ([2_000] if quick else [1_000_000]):
        per_head = min(PER_HEAD, cases * 4 // 10) if quick else PER_HEAD
        for database in databases:
            if database == "sqlite":
                with tempfile.TemporaryDirectory(prefix="bench-audit-index-") as tmp:
                    rows.append(_index(f"sqlite:///{tmp}/clerk.db", cases, 3, per_head))
            else:
                with postgres_server(durable=True) as pg:
                    rows.append(_index(pg.create_database("bench_index"), cases, 3, per_head))
    table(
        "the per-case index: a log of 10 events a case, then a head a minute at a 1,000,000-debtor sweep's "
        f"rate ({PER_HEAD:,} events on {PER_HEAD // 4:,} random cases); % of a core = a head's signing "
        "(the index's update, its root, the signature) in a minute (goal < 10 %)",
        rows,
    )
    record("audit index", rows, quick=quick)


def run(quick: bool = False) -> None:
    from deployments.pgserver import postgres_server

    events = 5_000 if quick else 200_000
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        rows.append(_measure(f"sqlite:///{tmp}/clerk.db", events))
    with postgres_server(durable=True) as pg:
        rows.append(_measure(pg.create_database("bench_audit"), events))
    table(
        "the audit log: appends (no lock), the sequencer (places and signs), verify (the whole log), a "
        f"case's export with proofs ({CASES:,} cases), its offline check (goal: sequencing faster than a "
        "sweep appends, ≥ 2,200 events/s)",
        rows,
    )
    record("audit", rows, quick=quick)
