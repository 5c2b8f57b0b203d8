"""A run is finished by the use case that started it (issue 37): a plain sweep and a judge's case query
leave their `query_runs` row completed, with its counts, or failed when no registry answered; never
`running` once they returned. In process (`tests.fakes`), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from clerk import case_query, control, querying, sweeping
from clerk.casebook.casefile import read_case_file
from clerk.casebook.intake import import_cases
from clerk.context import Context
from connectors.base import QueryReply, QueryRequest, RegistryUnavailable
from models.tables import Case, QueryRun
from tests.fakes import FakeWorld, fake_world

NOW = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)
ACTOR = "flow-run:runs"


class Down:
    """A registry that answers nothing: its circuit is open."""

    def __init__(self, code: str) -> None:
        self.code = code

    async def query(self, request: QueryRequest) -> QueryReply:
        raise RegistryUnavailable(self.code, "circuit open")


def booked(sessions: sessionmaker[Session], tmp: Path) -> FakeWorld:
    world = fake_world(tmp, debtors=30, seed=4, now=NOW)
    rows, _ = read_case_file(world.case_file, max_bytes=10**7, today=NOW.date())
    with sessions.begin() as session:
        import_cases(session, rows, actor=ACTOR)
    return world


def runs(sessions: sessionmaker[Session]) -> list[tuple[str, str, dict[str, object] | None]]:
    with sessions() as session:
        return [
            (r.trigger, r.status, r.summary) for r in session.scalars(select(QueryRun).order_by(QueryRun.id))
        ]


def test_a_plain_sweep_and_a_case_query_finish_their_runs(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    world = booked(sessions, tmp_path)
    ctx = world.context(sessions, at=NOW, actor=ACTOR)
    swept = asyncio.run(sweeping.sweep_due(ctx, querying.Schedule()))
    with sessions() as session:
        number, judge = session.execute(select(Case.case_number, Case.judge).order_by(Case.id)).first()  # type: ignore[misc]
    started = querying.start_case_query(sessions, number, judge, {}, ACTOR, dry_run=False, flow_run_id=None)
    queried = asyncio.run(
        case_query.query_case(ctx, started, control_cases=lambda ids: control.control_cases(ctx, ids))
    )

    [(trigger, status, summary), (query_trigger, query_status, query_summary)] = runs(sessions)
    assert (trigger, status) == ("sweep (plain)", "completed")
    assert summary is not None and summary["debtors"] == swept.debtors > 0
    assert summary["effective"] == swept.control.effective
    assert (query_trigger, query_status) == ("case-query", "completed")
    assert query_summary is not None and query_summary["debtors"] == len(started.debtor_ids)
    assert query_summary["batches"] == len(world.registries) == queried.tally.batches


def test_a_run_no_registry_answered_is_finished_as_failed(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    world = booked(sessions, tmp_path)
    ctx = world.context(sessions, at=NOW, actor=ACTOR)
    down = Context(
        sessions,
        {code: r.__class__(code, Down(code), r.id, r.batch_size) for code, r in ctx.registries.items()},  # type: ignore[arg-type]
        actor=ACTOR,
    ).at(NOW)
    swept = asyncio.run(sweeping.sweep_due(down, querying.Schedule()))
    assert swept.outcome()[0] is False
    [(trigger, status, summary)] = runs(sessions)
    assert (trigger, status) == ("sweep (plain)", "failed")
    assert summary is not None and summary["failed_lookups"] == swept.tally.total("failed") > 0
