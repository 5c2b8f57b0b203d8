"""Write down, send once, settle by key (`clerk.control.exchange`), for measures and for actions, on the
database (SQLite and PostgreSQL) with in-process registries over the simulators' ledgers (`tests.fakes`):
no sockets, so each case is a fraction of a second beside its real-HTTP twin in tests/system. The ledgers
are the referee: what a registry holds, and how often each key reached it."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from clerk import control, lifecycle, querying, sweeping
from clerk.casebook import cases
from clerk.casebook.casefile import read_case_file
from clerk.casebook.intake import import_cases
from clerk.context import Context
from clerk.lifecycle.deduction import HOLDING_MONEY
from clerk.store import db, tree
from models.rules import ReleaseOrder
from models.status import ActionStatus, MeasureStatus
from models.tables import Asset, Case, ControlMeasure, MeasureAction, Payment
from tests.fakes import FakeWorld, fake_world

NOW = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)
TODAY = NOW.date()
ACTOR = "flow-run:test"
LATER = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)  # settle everything written down so far
COURT_ACCOUNT = "6222000000000000001"


def world_in_book(sessions: sessionmaker[Session], tmp: Path, debtors: int, seed: int) -> FakeWorld:
    world = fake_world(tmp, debtors=debtors, seed=seed, now=NOW)
    rows, _ = read_case_file(world.case_file, max_bytes=10**8, today=TODAY)
    with sessions.begin() as session:
        import_cases(session, rows, actor=ACTOR)
    return world


def at_work(sessions: sessionmaker[Session], world: FakeWorld) -> Context:
    return world.context(sessions, at=NOW, actor=ACTOR, court_account=COURT_ACCOUNT)


def sweep(sessions: sessionmaker[Session], world: FakeWorld) -> sweeping.Swept:
    return asyncio.run(sweeping.sweep_due(at_work(sessions, world), querying.Schedule()))


def approved_deduction(sessions: sessionmaker[Session]) -> tuple[str, lifecycle.DeductionProposal, list[int]]:
    """The first case holding a freeze with money on it, its deduction proposed and approved in full by
    its judge: (case number, proposal, the actions written down, not yet sent)."""
    with sessions() as session:
        number = session.scalars(
            select(Case.case_number)
            .join(ControlMeasure, ControlMeasure.case_id == Case.id)
            .where(*HOLDING_MONEY)
            .order_by(Case.id)
        ).first()
    assert number is not None
    proposal = db.in_transaction(sessions, lifecycle.propose_deduction, number, TODAY)
    ids = db.in_transaction(
        sessions, lifecycle.approve_deduction, proposal, proposal.total_fen, "李法官", ACTOR, NOW
    )
    return number, proposal, ids


def sent_more_than_once(world: FakeWorld, verb: str) -> list[str]:
    return [key for key, n in collections.Counter(world.keys_sent(verb)).items() if n > 1]


def test_a_sweep_records_every_hit_once_and_holds_the_cap_at_the_ledgers(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    world = world_in_book(sessions, tmp_path, debtors=120, seed=5)
    swept = sweep(sessions, world)
    assert swept.debtors == 120 and swept.tally.total("failed") == 0
    assert swept.control.effective > 0
    ledger = world.ledger_measures()
    with sessions() as session:
        assets = session.scalar(select(func.count()).select_from(Asset))
        holdings = sum(
            1
            for r in world.registries.values()
            for h in r.ledger.holdings.values()
            if h.owner_id in {d.id_number for d in world.debtors}
        )
        assert assets == holdings, "every hit the registries hold is recorded, once"
        for case in session.scalars(select(Case)):
            ours = session.scalars(select(ControlMeasure).where(ControlMeasure.case_id == case.id)).all()
            held = sum(getattr(ledger.get(m.idempotency_key), "held_fen", 0) or 0 for m in ours)
            assert held <= cases.owed(case, TODAY).remaining, case.case_number
        assert tree.verify(session).ok
    assert sent_more_than_once(world, "control") == []


def test_replies_lost_after_the_registry_acted_are_settled_by_key_and_never_sent_again(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    world = world_in_book(sessions, tmp_path, debtors=80, seed=7)
    for registry in world.registries.values():
        registry.lose_replies = 10**6  # every answer to a control request is lost on the way back
    swept = sweep(sessions, world)
    assert swept.control.requested > 0
    assert swept.control.unconfirmed == swept.control.requested, "nothing is confirmed: all stay requested"
    with sessions() as session:
        statuses = set(session.scalars(select(ControlMeasure.status)))
    assert statuses == {MeasureStatus.REQUESTED}

    for registry in world.registries.values():
        registry.lose_replies = 0
    settled = asyncio.run(control.resolve_unconfirmed(at_work(sessions, world), LATER))
    assert settled.unconfirmed == 0 and settled.effective + settled.queued + settled.refused > 0
    ledger = world.ledger_measures()
    with sessions() as session:
        for measure in session.scalars(select(ControlMeasure)):
            assert measure.status != MeasureStatus.REQUESTED
            if measure.status in (MeasureStatus.EFFECTIVE, MeasureStatus.QUEUED):
                assert getattr(ledger[measure.idempotency_key], "number", None) == measure.registry_reference
    assert sent_more_than_once(world, "control") == [], "settled by status, not sent again"


def test_a_measure_written_down_but_never_sent_is_sent_once_with_its_key(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    """The crash between the plan's commit and the request leaving: the key is unknown to the registry."""
    world = world_in_book(sessions, tmp_path, debtors=60, seed=9)
    ctx = at_work(sessions, world)

    with sessions() as session:
        debtor_ids = querying.due_page(session, NOW, querying.Schedule(), 0, 10_000)

    async def query_only() -> None:
        run_id = db.in_transaction(sessions, querying.start_run, "test")
        for code in ctx.registries:
            await querying.query_batch(ctx, code, run_id, debtor_ids)

    asyncio.run(query_only())
    with sessions() as session:
        case_ids = list(session.scalars(select(Case.id)))
    plans = db.in_transaction(sessions, control.plan_cases, case_ids, TODAY, control.Policy(), ACTOR)
    planned = [i for p in plans for i in p.measure_ids]
    assert planned and world.keys_sent("control") == []

    first = asyncio.run(control.resolve_unconfirmed(at_work(sessions, world), LATER))
    assert first.effective + first.queued + first.refused == len(planned)
    again = asyncio.run(control.resolve_unconfirmed(at_work(sessions, world), LATER))
    assert again.effective + again.queued + again.refused + again.unconfirmed == 0, "nothing left to settle"
    assert len(world.keys_sent("control")) == len(planned) and sent_more_than_once(world, "control") == []


def test_releases_lost_on_the_way_back_are_settled_like_freezes(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    world = world_in_book(sessions, tmp_path, debtors=80, seed=11)
    sweep(sessions, world)
    with sessions.begin() as session:
        numbers = session.scalars(
            select(Case.case_number)
            .join(ControlMeasure, ControlMeasure.case_id == Case.id)
            .where(ControlMeasure.status == MeasureStatus.EFFECTIVE)
            .distinct()
        ).all()
        for number in numbers:
            cases.change_status(session, number, "withdrawn", actor=ACTOR, reason="test", today=TODAY)
    for registry in world.registries.values():
        registry.lose_replies = 10**6
    released = asyncio.run(lifecycle.release_due(at_work(sessions, world), ReleaseOrder.NEWEST))
    assert released.cases == len(numbers) and released.releases > 0
    assert released.counts.unconfirmed == released.releases and released.counts.done == 0

    for registry in world.registries.values():
        registry.lose_replies = 0
    settled = asyncio.run(control.resolve_actions(at_work(sessions, world), LATER))
    assert settled.done == released.releases
    with sessions() as session:
        assert set(session.scalars(select(MeasureAction.status))) == {ActionStatus.DONE}
        live = session.scalars(
            select(ControlMeasure).where(ControlMeasure.status == MeasureStatus.EFFECTIVE)
        ).all()
        assert live == [], "every measure of the withdrawn cases is released"
    held = [m for m in world.ledger_measures().values() if getattr(m, "status", None) != "released"]
    assert held == [], "and the registries hold nothing for them"
    assert sent_more_than_once(world, "release") == []


def test_a_deduction_whose_answer_was_lost_is_sent_again_with_its_key_and_moves_money_once(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    world = world_in_book(sessions, tmp_path, debtors=80, seed=13)
    sweep(sessions, world)
    _, proposal, ids = approved_deduction(sessions)
    for registry in world.registries.values():
        registry.lose_replies = 10**6
    lost = asyncio.run(control.send_actions(at_work(sessions, world), ids))
    assert lost.unconfirmed == len(ids) and lost.done == 0

    for registry in world.registries.values():
        registry.lose_replies = 0
    settled = asyncio.run(control.resolve_actions(at_work(sessions, world), LATER))
    assert settled.done == len(ids) and settled.amount_fen == proposal.total_fen
    with sessions() as session:
        moved = session.scalar(select(func.sum(Payment.amount_fen)).where(Payment.source == "deduction"))
    assert moved == proposal.total_fen, "recorded as a payment once"
    deducted = collections.Counter(world.keys_sent("deduct"))
    assert set(deducted.values()) == {2}, "each sent twice with the same key …"
    banks = [r for r in world.registries.values() if r.kind == "bank"]
    answers = [r.ledger.answer(key) for r in banks for key in deducted]
    assert sum(a.deducted_fen or 0 for a in answers if a is not None) == proposal.total_fen, (
        "… and the bank moved the money once (its first answer to the key)"
    )
