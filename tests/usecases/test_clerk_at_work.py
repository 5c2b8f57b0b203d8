"""The clerk's steps end to end, without Prefect: query every registry for every due debtor, record each
hit once, freeze and seize within the cap, against the simulators over real HTTP, on SQLite and PostgreSQL.
The simulators' ledgers are the referee."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from clerk import control, querying, sweeping
from clerk.casebook import cases
from clerk.casebook.casefile import read_case_file
from clerk.casebook.intake import import_cases
from clerk.store import tree
from connectors.loader import build
from models.tables import Asset, Case, CaseDebtor, ControlMeasure, Debtor, Notification, Query
from tests.fakes import context_for
from tests.world import World, served_world

NOW = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)
TODAY = NOW.date()
ACTOR = "flow-run:test"
ALLOWED = ["bank-json", "real-estate-xml", "vehicle-json"]


def import_world(sessions: sessionmaker[Session], world: World) -> None:
    rows, _ = read_case_file(world.case_file, max_bytes=10**8, today=TODAY)
    with sessions.begin() as session:
        import_cases(session, rows, actor=ACTOR)


async def sweep(
    sessions: sessionmaker[Session], world: World, policy: control.Policy, page_size: int = 100
) -> sweeping.Swept:
    """The sweep flow's pages and steps, without Prefect."""
    connectors = build(world.configs, ALLOWED)
    try:
        ctx = context_for(sessions, connectors, world.configs, at=NOW, actor=ACTOR, policy=policy)
        return await sweeping.sweep_due(ctx, querying.Schedule(), page_size)
    finally:
        await asyncio.gather(*(c.aclose() for c in connectors.values()))


def check_cap(sessions: sessionmaker[Session], world: World) -> int:
    """No case holds more than it owes, by our records and by the banks' ledgers. Returns cases frozen."""
    ledger = world.ledger_measures()
    frozen_cases = 0
    with sessions() as session:
        for case in session.scalars(select(Case)):
            owed = cases.owed(case, TODAY).remaining
            ours = list(session.scalars(select(ControlMeasure).where(ControlMeasure.case_id == case.id)))
            assert sum(control.covered_by(m) for m in ours) <= owed, case.case_number
            held = sum(
                getattr(ledger[m.idempotency_key], "held_fen", 0) or 0
                for m in ours
                if m.idempotency_key in ledger
            )
            assert held <= owed, case.case_number
            frozen_cases += held > 0
    return frozen_cases


def test_sweep_records_every_hit_once_and_freezes_within_the_cap(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    with served_world(tmp_path, debtors=300, seed=5, now=NOW) as world:
        import_world(sessions, world)
        first = asyncio.run(sweep(sessions, world, control.Policy()))
        with sessions() as session:
            assets = session.scalar(select(func.count()).select_from(Asset))
            duplicated = session.execute(
                select(Asset.registry_id, Asset.identifier)
                .group_by(Asset.registry_id, Asset.identifier)
                .having(func.count() > 1)
            ).all()
            queries = session.scalar(select(func.count()).select_from(Query))
        assert assets == world.holdings_of_debtors(), "every hit the simulators hold is recorded"
        assert duplicated == []
        assert queries == 300 * len(world.configs)
        assert first.debtors == 300 and first.tally.total("failed") == 0
        assert first.control.effective > 0 and first.control.frozen_fen > 0
        frozen_cases = check_cap(sessions, world)
        assert frozen_cases > 0

        ledger = world.ledger_measures()
        with sessions() as session:
            ours = {m.idempotency_key: m for m in session.scalars(select(ControlMeasure))}
        assert set(ledger) <= set(ours), "every measure a registry holds is in our records"
        for key, measure in ours.items():
            if measure.status in ("effective", "queued"):
                assert key in ledger and ledger[key].number == measure.registry_reference

        # A second sweep a day later asks nobody (not due yet) and changes nothing.
        with sessions() as session:
            assert (
                list(querying.due_debtor_ids(session, NOW + dt.timedelta(days=1), querying.Schedule())) == []
            )
        with sessions() as session:
            assert tree.verify(session).ok


def test_each_page_is_controlled_before_the_next_and_each_applicant_is_told_once(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    """A page of one debtor: every case with co-debtors straddles pages."""
    with served_world(tmp_path, debtors=60, seed=11, now=NOW) as world:
        import_world(sessions, world)
        owners = {h.owner_id for sim in world.simulators.values() for h in sim.ledger.holdings.values()}
        with sessions.begin() as session:
            shared = session.execute(
                select(CaseDebtor.case_id).group_by(CaseDebtor.case_id).having(func.count() > 1)
            ).scalars()
            holds: dict[bool, list[str]] = {True: [], False: []}
            for case in [session.get_one(Case, case_id) for case_id in shared]:
                debtors = querying.debtor_ids_of_case(session, case.id)
                ids = {session.get_one(Debtor, d).id_number for d in debtors}
                holds[bool(ids & owners)].append(case.case_number)
            # Terminated: some whose debtors hold something (they resume), and two whose debtors hold nothing
            # (their holdings taken off the simulators' books here).
            for number in holds[True][1:3]:
                debtors = querying.debtor_ids_of_case(session, cases.get_case(session, number).id)
                gone = {session.get_one(Debtor, d).id_number for d in debtors}
                for sim in world.simulators.values():
                    for owner in gone:
                        sim.ledger.forget_owner(owner)
                holds[True].remove(number)
                holds[False].append(number)
            terminated = holds[True][::2] + holds[False]
            for number in terminated:
                cases.change_status(
                    session, number, "terminated", actor=ACTOR, reason="无可供执行财产", today=TODAY
                )
        swept = asyncio.run(sweep(sessions, world, control.Policy(), page_size=1))
        assert swept.debtors == 60 and swept.control.effective > 0
        assert swept.told_requeried == len(holds[False]) == 2
        with sessions() as session:
            first_measure = session.scalar(select(func.min(ControlMeasure.created_at)))
            last_lookup = session.scalar(select(func.max(Query.sent_at)))
            assert first_measure is not None and last_lookup is not None
            assert first_measure < last_lookup, (
                "the first page's cases were controlled before the last was asked"
            )
            told = session.execute(
                select(Notification.case_id, Notification.template, func.count())
                .where(Notification.template.in_(("hits.found", "case.requeried")))
                .group_by(Notification.case_id, Notification.template)
            ).all()
            assert told and all(n == 1 for _, _, n in told), "one notice of each kind per case per run"
            hits_found = {case_id for case_id, template, _ in told if template == "hits.found"}
            with_assets = select(CaseDebtor.case_id).join(Asset, Asset.debtor_id == CaseDebtor.debtor_id)
            active_with_assets = set(session.scalars(with_assets.join(Case).where(Case.status == "active")))
            # Every active case with a hit was told; so were resumed cases whose later co-debtors found more.
            assert hits_found <= active_with_assets
            assert {
                c for c in active_with_assets if session.get_one(Case, c).resumed_from_id is None
            } <= hits_found
            by_number = {
                c.case_number: c
                for c in session.scalars(select(Case).where(Case.case_number.in_(terminated)))
            }
            requeried = {case_id for case_id, template, _ in told if template == "case.requeried"}
            still = {c.id for c in by_number.values() if c.status == "terminated"}
            assert requeried == still, (
                "the applicant of a terminated case is told once, after all its debtors"
            )
            assert still == {c.id for c in by_number.values() if c.case_number in holds[False]}
        assert check_cap(sessions, world) > 0


def test_a_dry_run_plans_but_writes_and_sends_nothing(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    with served_world(tmp_path, debtors=60, seed=6, now=NOW) as world:
        import_world(sessions, world)
        connectors = build(world.configs, ALLOWED)
        with sessions.begin() as session:
            querying.ensure_registries(session, world.configs)
        with sessions() as session:
            before = [
                session.scalar(select(func.count()).select_from(t)) for t in (Asset, Query, ControlMeasure)
            ]
            case_ids = list(session.scalars(select(Case.id)))
            trail = tree.verify(session).events

        ctx = context_for(sessions, connectors, world.configs, at=NOW, actor=ACTOR)

        async def go() -> list[control.Counts]:
            try:
                return [(await control.dry_run_case(ctx, case_id))[1] for case_id in case_ids]
            finally:
                await asyncio.gather(*(c.aclose() for c in connectors.values()))

        results = asyncio.run(go())
        assert sum(r.freeze_requested_fen for r in results) > 0 and sum(r.requested for r in results) > 0
        with sessions() as session:
            after = [
                session.scalar(select(func.count()).select_from(t)) for t in (Asset, Query, ControlMeasure)
            ]
            assert after == before == [0, 0, 0]
            assert tree.verify(session).events == trail
        assert world.ledger_measures() == {}


@pytest.mark.parametrize(
    "database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
def test_two_runs_controlling_the_same_cases_at_once_keep_the_cap(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    with served_world(tmp_path, debtors=200, seed=8, now=NOW) as world:
        import_world(sessions, world)
        connectors = build(world.configs, ALLOWED)

        async def go() -> None:
            ctx = context_for(sessions, connectors, world.configs, at=NOW, actor=ACTOR)
            with sessions.begin() as session:
                run_id = querying.start_run(session, "test")
            with sessions() as session:
                debtors = [
                    d for page in querying.due_debtor_ids(session, NOW, querying.Schedule()) for d in page
                ]
            for c in world.configs:
                await querying.query_batch(ctx, c.code, run_id, debtors)
            with sessions() as session:
                case_ids = list(session.scalars(select(Case.id)))
            # Two runs, two threads each planning, on the same cases at the same time.
            await asyncio.gather(*(control.control_cases(ctx, case_ids) for _ in range(2)))
            await asyncio.gather(*(c.aclose() for c in connectors.values()))

        asyncio.run(go())
        assert check_cap(sessions, world) > 0
        with sessions() as session:
            keys = session.scalars(select(ControlMeasure.idempotency_key)).all()
        assert len(keys) == len(set(keys)) == len(world.ledger_measures()), "no request was sent twice"
