"""The GIL convoy on SQLite (bench/README.md item 23): what writing and reading rows in the database thread
costs while another thread keeps the GIL busy, as the event loop does with registry HTTP during a sweep.

SQLite's driver lets go of the GIL around every step of a statement: one per row of an `executemany` or of
a read. Taking it back waits for the interpreter's switch interval whenever the other thread runs. Each way
of writing a page's audit events (a Core INSERT, which SQLAlchemy sends as one `executemany`, and
`clerk.store.bulk.insert_rows`, multi-row statements) and two ways of reading them (row by row, and in one
step: `db.all_rows`) are timed alone and beside a busy thread, at Python's default switch interval (5 ms)
and at the clerk's (`db.SQLITE_SWITCH_INTERVAL`): the wall time and the database thread's own CPU time
(the hand-overs cost CPU too, which is why the sweep on SQLite runs its database steps in the event loop's
thread: `db.run`).
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import insert, select

from bench.common import record, table
from clerk.store import bulk, db
from models.tables import AuditEvent, utcnow

_EVENTS = db.table(AuditEvent)


@contextmanager
def _busy(on: bool) -> Iterator[None]:
    """A thread that keeps running Python (the event loop's stand-in), while the block runs."""
    stop = threading.Event()

    def spin() -> None:
        n = 0
        while not stop.is_set():
            n += 1

    thread = threading.Thread(target=spin, daemon=True)
    if on:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        if on:
            thread.join()


def _rows(n: int, tag: str) -> list[dict[str, Any]]:
    now = utcnow()
    return [
        {
            "occurred_at": now,
            "actor": "flow-run:bench",
            "action": "hit.recorded",
            "case_number": f"（2026）豫0185执{i % 1000 + 1}号",
            "payload": f'{{"n":{i},"tag":"{tag}"}}',
            "hash": f"{tag}{i:060d}"[-64:],
        }
        for i in range(n)
    ]


def _measure(rows: int) -> list[dict[str, Any]]:
    before = sys.getswitchinterval()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-convoy-") as tmp:
        engine = db.make_engine(f"sqlite:///{tmp}/clerk.db")  # sets the clerk's switch interval
        db.upgrade(engine)
        sessions = db.session_factory(engine)
        ways: dict[str, Callable[[Any, list[dict[str, Any]]], object]] = {
            "Core INSERT (executemany)": lambda s, r: s.execute(insert(_EVENTS), r),
            "bulk.insert_rows": lambda s, r: bulk.insert_rows(s, _EVENTS, r),
            "read them back": lambda s, r: s.execute(
                select(_EVENTS).where(_EVENTS.c.actor == r[0]["actor"])
            ).all(),
            "read them back in one step (db.all_rows)": lambda s, r: db.all_rows(
                s, select(_EVENTS).where(_EVENTS.c.actor == r[0]["actor"])
            ),
        }
        try:
            for interval in (0.005, db.SQLITE_SWITCH_INTERVAL):
                sys.setswitchinterval(interval)
                for name, way in ways.items():
                    row: dict[str, Any] = {"way": name, "rows": rows, "switch interval ms": interval * 1000}
                    for busy in (False, True):
                        tag = f"{name[:4]}{interval}{busy}"
                        data = _rows(rows, tag)
                        if name.startswith("read"):  # the rows to read: written first, by their own actor
                            data = [r | {"actor": f"reader {tag}"} for r in data]
                            with sessions.begin() as session:
                                bulk.insert_rows(session, _EVENTS, data)
                        with _busy(busy), sessions.begin() as session:
                            started, cpu = time.perf_counter(), time.thread_time()
                            way(session, data)
                            took, cpu = time.perf_counter() - started, time.thread_time() - cpu
                        where = "beside a busy thread" if busy else "alone"
                        row[f"{where} ms"] = round(took * 1000, 1)
                        row[f"{where} CPU ms"] = round(cpu * 1000, 1)
                    row["slower beside"] = round(
                        row["beside a busy thread ms"] / max(row["alone ms"], 0.01), 1
                    )
                    results.append(row)
        finally:
            sys.setswitchinterval(before)
            engine.dispose()
    return results


def run(quick: bool = False) -> list[dict[str, Any]]:
    rows = _measure(300 if quick else 3000)
    record("convoy", rows, quick=quick)
    table("the GIL convoy on SQLite (goal: the sweep's writes not slowed by the event loop's thread)", rows)
    return rows
