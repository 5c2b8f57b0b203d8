"""The 24-hour rule (models.scoreboard): the registry scoreboard over real lookups on the database, a
registry that leaves requests open past 24 hours shown late and alerted once a day, and the CLI's report."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from clerk import querying, sweeping
from clerk.casebook.casefile import read_case_file
from clerk.casebook.intake import import_cases
from clerk.store import db
from clerk.supervision.scoreboard import late_to_alert, registry_scoreboard
from cli import app
from connectors.loader import build
from connectors.simulator.faults import FaultPlan
from models.scoreboard import ANSWER_WITHIN, percentile
from models.tables import Query, Registry
from tests.fakes import book, context_for, fake_world
from tests.world import served_world

NOW = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)
ACTOR = "flow-run:test"
SLOW = "bank-b"


def test_percentiles_are_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert (
        percentile([3.0, 1.0, 2.0], 50) == 2.0 and percentile([float(i) for i in range(1, 101)], 95) == 95.0
    )


def test_a_registry_that_leaves_requests_open_past_24_hours_is_late_and_alerted_once_a_day(
    sessions: sessionmaker[Session], tmp_path: Path, clerk_env: str
) -> None:
    world = fake_world(tmp_path, debtors=40, seed=21, now=NOW)
    registry_ids, debtor_ids = book(sessions, world, NOW, ACTOR)
    run_id = db.in_transaction(sessions, querying.start_run, "test")

    ctx = world.context(sessions, at=NOW, actor=ACTOR)

    async def ask() -> None:
        for code in world.registries:
            if code != SLOW:
                await querying.query_batch(ctx, code, run_id, debtor_ids)

    asyncio.run(ask())
    now = dt.datetime.now(dt.UTC)
    # The slow bank accepted its lookups "for later" 25 hours ago and has not answered since.
    with sessions.begin() as session:
        querying.record_sent(
            session, run_id=run_id, registry_id=registry_ids[SLOW], debtor_ids=debtor_ids, ref="slow-ref"
        )
        session.execute(
            update(Query)
            .where(Query.registry_id == registry_ids[SLOW])
            .values(status="pending", sent_at=now - ANSWER_WITHIN - dt.timedelta(hours=1))
        )
    with sessions() as session:
        scores = {s.registry: s for s in registry_scoreboard(session, now - dt.timedelta(days=2), now, now)}
    slow = scores[SLOW]
    assert slow.overdue == len(debtor_ids) and slow.answers == 0 and not slow.kept_the_rule
    for code in set(world.registries) - {SLOW}:
        assert scores[code].kept_the_rule and scores[code].answers == len(debtor_ids), code
        assert scores[code].p95_s is not None and scores[code].p95_s < 60

    with sessions.begin() as session:
        assert [s.registry for s in late_to_alert(session, now)] == [SLOW]
    with sessions.begin() as session:
        assert late_to_alert(session, now + dt.timedelta(hours=1)) == [], "once a day"
    with sessions.begin() as session:
        again = late_to_alert(session, now + ANSWER_WITHIN + dt.timedelta(minutes=1))
        assert [s.registry for s in again] == [SLOW], "still late a day later: alerted again"
        session.execute(update(Registry).values(late_alerted_at=None))

    result = CliRunner().invoke(app, ["registries", "report", "--hours", "48"])
    assert result.exit_code == 1, result.stdout
    assert f"late: {SLOW} (answers after 24 h, or requests still open after 24 h)" in result.stderr
    assert SLOW in result.stdout and "the rule: answer within 24 h" in result.stdout
    assert all(len(line) <= 80 for line in result.stdout.splitlines()), "the table fits 80 columns"

    # Pushed back to 20 hours ago, the slow bank keeps the rule today, and breaks it within 5 hours.
    with sessions.begin() as session:
        session.execute(
            update(Query)
            .where(Query.registry_id == registry_ids[SLOW])
            .values(sent_at=now - dt.timedelta(hours=20))
        )
    assert CliRunner().invoke(app, ["registries", "report"]).exit_code == 0
    ahead = CliRunner().invoke(app, ["registries", "report", "--ahead", "5"])
    assert ahead.exit_code == 1 and f"late: {SLOW}" in ahead.stderr
    assert "as they will stand in 5 h if nothing more is answered" in ahead.stdout


def test_registries_made_slow_at_the_simulators_show_late_once_24_hours_pass(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    """Over real HTTP: every simulator answers "later" (faults) and nothing collects the answers; a day on,
    the scoreboard shows each registry late with every lookup of the sweep still open."""
    with served_world(tmp_path, debtors=20, seed=23, now=NOW, faults=FaultPlan(seed=5, later=1.0)) as world:
        rows, _ = read_case_file(world.case_file, max_bytes=10**7, today=NOW.date())
        with sessions.begin() as session:
            import_cases(session, rows, actor=ACTOR)
        connectors = build(world.configs, ["bank-json", "real-estate-xml", "vehicle-json"])

        async def sweep() -> sweeping.Swept:
            try:
                ctx = context_for(sessions, connectors, world.configs, at=NOW, actor=ACTOR)
                return await sweeping.sweep_due(ctx, querying.Schedule())
            finally:
                await asyncio.gather(*(c.aclose() for c in connectors.values()))

        swept = asyncio.run(sweep())
    assert swept.tally.total("pending") == 20 * len(world.configs)
    now = dt.datetime.now(dt.UTC)
    with sessions() as session:
        today = registry_scoreboard(session, now - dt.timedelta(hours=1), now, now)
        tomorrow = registry_scoreboard(session, now - dt.timedelta(hours=1), now, now + ANSWER_WITHIN)
    assert all(s.kept_the_rule and s.requests == 20 for s in today), "not late yet"
    assert {s.registry for s in tomorrow if s.overdue == 20} == {c.code for c in world.configs}
