"""Two registries' replies for the same debtors, recorded at once on PostgreSQL, do not deadlock; nor does
a plan for some cases beside notices written for the same cases in another order.

Each reply stamps its debtors' `last_queried_at`, so the five registries' replies to a page of a sweep all
lock the same debtor rows. An UPDATE locks rows in the order its plan reads them: by the primary key
through an index, by place in the table through a sequential scan, and after many updates the two orders
differ. CI once caught two such replies each holding rows the other needed. Here the two orders are forced
(one reply's session may not use an index, the other must) and a third transaction holds a debtor in the
middle, so both replies have taken their first rows and wait when it lets go: in plan order they deadlock
every time; in the id order `record_reply` locks in, one waits for the other.

A plan locks its cases in id order, but an insert that refers to a case (a notice, written for each measure
that took effect as control answers are recorded, in their order) takes a `FOR KEY SHARE` lock on it, which
`FOR UPDATE` waits for. Two shards of a province sweep at 1,000,000 debtors deadlocked that way: one
recording answers for cases B then A, the other planning A and B. Plans lock `FOR NO KEY UPDATE`, which such
inserts do not wait for, nor it for them."""

from __future__ import annotations

import datetime as dt
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from clerk import control, querying
from clerk.casebook import notices
from clerk.casebook.casefile import read_case_file, write_case_file
from clerk.casebook.intake import import_cases
from clerk.store import db
from connectors.base import QueryReply, SubjectResult, SubjectStatus
from connectors.config import placeholder_configs
from connectors.simulator.synthetic import sample_case_rows
from deployments.pgserver import PostgresServer
from models.tables import Case, Debtor, Notification, Query

pytestmark = pytest.mark.postgres
_databases = itertools.count(1)

TODAY = dt.date(2026, 11, 23)
ACTOR = "user:tester"
#: Plan settings for each recording session: a sequential scan only (rows in the table's order), or the
#: primary key's index (rows in id order).
TABLE_ORDER = ("SET LOCAL enable_indexscan = off", "SET LOCAL enable_bitmapscan = off")
INDEX_ORDER = ("SET LOCAL enable_seqscan = off", "SET LOCAL enable_bitmapscan = off")


@pytest.fixture
def pg_engine(pg_server: PostgresServer) -> Iterator[Engine]:
    engine = db.make_engine(pg_server.create_database(f"clerk_lock_order_{next(_databases)}"))
    db.upgrade(engine)
    yield engine
    engine.dispose()


def case_book(engine: Engine, tmp_path: Path, cases: int) -> sessionmaker[Session]:
    """`cases` sample cases imported; the sessions to use them."""
    sessions = db.session_factory(engine)
    path = tmp_path / "cases.csv"
    write_case_file(path, sample_case_rows(seed=3, cases=cases, today=TODAY))
    rows, _ = read_case_file(path, max_bytes=10**7, today=TODAY)
    with sessions.begin() as session:
        import_cases(session, rows, actor=ACTOR)
    return sessions


def waiting_on_locks(engine: Engine) -> int:
    with engine.connect() as conn:
        waiting = conn.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
    return int(waiting or 0)


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.02)


def test_replies_for_the_same_debtors_lock_them_in_id_order_whatever_the_plan(
    pg_engine: Engine, tmp_path: Path
) -> None:
    # 20 cases: their debtors and the rows rewritten below fit one page, so the rewrite reverses the
    # table's order (with more, PostgreSQL reuses space freed in the page and the order is mixed).
    sessions = case_book(pg_engine, tmp_path, cases=20)
    with sessions.begin() as session:
        configs = placeholder_configs()[:2]  # two registries' rows; nothing is sent to them
        registries = querying.ensure_registries(session, configs)
        run_id = querying.start_run(session, "test")
        debtor_ids = sorted(session.scalars(select(Debtor.id)))
        for registry_id in registries.values():
            querying.record_sent(
                session, run_id=run_id, registry_id=registry_id, debtor_ids=debtor_ids, ref="r"
            )
    # Rewrite the debtors one by one from the highest id down: the table's order is now the reverse of the ids'.
    for debtor_id in reversed(debtor_ids):
        with sessions.begin() as session:
            session.execute(update(Debtor).where(Debtor.id == debtor_id).values(last_queried_at=None))
    with pg_engine.connect() as conn:
        in_table_order = list(conn.scalars(text("SELECT id FROM debtors ORDER BY ctid")))
    assert in_table_order == list(reversed(debtor_ids)), "the two plans read the rows in opposite orders"

    middle = debtor_ids[len(debtor_ids) // 2]
    reply = QueryReply(
        request_ref="r",
        results=tuple(SubjectResult(subject_ref=str(d), status=SubjectStatus.NONE) for d in debtor_ids),
    )
    failures: list[BaseException] = []

    def record(code: str, plan: tuple[str, ...]) -> None:
        try:
            with sessions.begin() as session:
                for setting in plan:
                    session.execute(text(setting))
                querying.record_reply(
                    session,
                    run_id=run_id,
                    registry_id=registries[code],
                    registry_code=code,
                    reply=reply,
                    actor=ACTOR,
                )
        except BaseException as exc:  # reported by the test below
            failures.append(exc)

    with pg_engine.connect() as holder:
        holder.execute(text("SELECT id FROM debtors WHERE id = :id FOR NO KEY UPDATE"), {"id": middle})
        by_table = threading.Thread(target=record, args=(configs[0].code, TABLE_ORDER))
        by_index = threading.Thread(target=record, args=(configs[1].code, INDEX_ORDER))
        by_table.start()
        wait_until(lambda: waiting_on_locks(pg_engine) == 1, "the first reply to wait for a debtor")
        by_index.start()
        wait_until(lambda: waiting_on_locks(pg_engine) == 2, "the second reply to wait for a debtor")
        holder.rollback()  # lets go of the middle debtor
    for thread in (by_table, by_index):
        thread.join(timeout=60)
        assert not thread.is_alive(), "a reply is still waiting for its locks"
    assert failures == []

    with sessions() as session:
        answered = session.scalar(select(func.count()).select_from(Query).where(Query.status == "answered"))
        unstamped = session.scalar(
            select(func.count()).select_from(Debtor).where(Debtor.last_queried_at.is_(None))
        )
    assert answered == 2 * len(debtor_ids)
    assert unstamped == 0


def test_a_plan_and_notices_for_the_same_cases_in_the_other_order_do_not_deadlock(
    pg_engine: Engine, tmp_path: Path
) -> None:
    sessions = case_book(pg_engine, tmp_path, cases=2)
    with sessions() as session:
        first, second = sorted(session.scalars(select(Case.id)))

    def notice(case_id: int) -> list[notices.Draft]:
        return [notices.Draft(case_id, "judge", "measure.effective", {})]

    planned: list[list[control.Plan]] = []
    failures: list[BaseException] = []

    def plan() -> None:
        try:
            with sessions.begin() as session:
                planned.append(control.plan_cases(session, [first, second], TODAY, control.Policy(), ACTOR))
        except BaseException as exc:  # reported by the test below
            failures.append(exc)

    recording = sessions()
    try:
        with recording.begin():
            notices.notify_many(recording, notice(second))  # holds FOR KEY SHARE on the second case
            planner = threading.Thread(target=plan)
            planner.start()
            planner.join(timeout=20)  # under FOR UPDATE it waits here for the second case, holding the first
            notices.notify_many(recording, notice(first))  # ... and this waits for it: a deadlock
        planner.join(timeout=60)
    finally:
        recording.close()
    assert not planner.is_alive(), "the plan is still waiting for its locks"
    assert failures == []
    assert [p.measure_ids for p in planned[0]] == [[], []]  # no assets known yet: nothing to place
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Notification)) == 2
        assert session.scalar(select(Case.version).where(Case.id == first)) == 2  # planned once
