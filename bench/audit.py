"""The audit log (clerk.store.audit, clerk.store.tree): what appending, sequencing, verifying and proving
cost, on SQLite and on PostgreSQL (a throwaway durable server), in one process.

Events are appended as a sweep appends them (in transactions of `PER_TRANSACTION`, payloads like a hit's);
then the sequencer places them all and signs the head, `verify` walks the whole log, and one case's export
proves each of its events. The figures say whether the sequencer keeps up with a sweep (a 1,000,000-debtor
first sweep writes ~4,000,000 events in under 30 minutes, ~2,200 a second) and what a supervising court's
check of the whole log costs.
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.common import record, table
from clerk.store import audit, db, heads, tree

PER_TRANSACTION = 500
CASES = 1_000


def _measure(url: str, events: int) -> dict[str, Any]:
    engine = db.make_engine(url)
    db.upgrade(engine)
    sessions = db.session_factory(engine)
    key = Ed25519PrivateKey.generate()
    started = time.perf_counter()
    for first in range(0, events, PER_TRANSACTION):
        with sessions.begin() as session:
            audit.append_many(
                session,
                [
                    audit.Entry(
                        "asset.found",
                        "flow-run:bench",
                        f"（2026）豫0185执{n % CASES + 1}号",
                        {"registry": "bank-a", "kind": "deposit", "account": "***************0014", "n": n},
                    )
                    for n in range(first, min(first + PER_TRANSACTION, events))
                ],
            )
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
    assert check.ok, check.problems
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
