"""Answers the clerk cannot read (issue 36): a bank that does what it is asked (freezes, renewals, releases,
deductions) and answers every one of them, and the status of every key, with an amount that is no amount
(`Hostile.unreadable_amount`: negative, NaN, 1e30, a word). Over real HTTP to the simulators, on SQLite and
PostgreSQL, without Prefect. Each such answer is an unknown outcome, never a refusal: the request keeps its
claim, is flagged once for a person and is settled by its key when the bank answers readably again; the
cap holds at the banks' own ledgers through sweeps, collects, a judge's query and a payment."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from clerk import control, lifecycle, querying, sweeping
from clerk.casebook import cases
from clerk.casebook.casefile import read_case_file
from clerk.casebook.intake import import_cases
from clerk.context import Context
from connectors.loader import build
from connectors.simulator.faults import Hostile
from models.rules import ReleaseOrder
from models.supervision import bureau_today
from models.tables import AuditEvent, Case, ControlMeasure, MeasureAction, Notification, Payment, Registry
from tests.fakes import context_for
from tests.world import World, served_world

NOW = dt.datetime.now(dt.UTC)
TODAY = bureau_today()
ACTOR = "flow-run:unreadable"
ALLOWED = ["bank-json", "real-estate-xml", "vehicle-json"]
BANKS = ("bank-a", "bank-b")
#: What the bank puts where the amount belongs: a negative amount, NaN, a number too large (as a JSON
#: number and as text) and a word.
UNREADABLE: list[Any] = ["-5.00", "NaN", 1e30, "1e30", "lots"]


@pytest.fixture
def world(sessions: sessionmaker[Session], tmp_path: Path) -> Iterator[World]:
    with served_world(tmp_path, debtors=40, seed=25, now=NOW, timeout_s=2.0) as served:
        rows, _ = read_case_file(served.case_file, max_bytes=10**8, today=NOW.date())
        with sessions.begin() as session:
            import_cases(session, rows, actor=ACTOR)
            querying.ensure_registries(session, served.configs)
        yield served


def garble(world: World, amount: Any) -> None:
    for code in BANKS:
        world.simulators[code].hostile = Hostile(unreadable_amount=amount)


def mend(world: World) -> None:
    for code in BANKS:
        world.simulators[code].hostile = Hostile()


def at_work(sessions: sessionmaker[Session], world: World, step: Any) -> Any:
    """Run `step(context)` against the world's registries over HTTP, closing them after."""

    async def run() -> Any:
        connectors = build(world.configs, ALLOWED)
        try:
            ctx = context_for(
                sessions, connectors, world.configs, at=NOW, actor=ACTOR, court_account="62220000"
            )
            return await step(ctx)
        finally:
            await asyncio.gather(*(c.aclose() for c in connectors.values()))

    return asyncio.run(run())


def sweep(sessions: sessionmaker[Session], world: World) -> sweeping.Swept:
    return at_work(sessions, world, lambda ctx: sweeping.sweep_due(ctx, querying.Schedule()))  # type: ignore[no-any-return]


def collect(sessions: sessionmaker[Session], world: World) -> tuple[control.Counts, control.Counts]:
    """What the collect flow settles by key: measures, then renewals, releases and deductions."""

    async def step(ctx: Context) -> tuple[control.Counts, control.Counts]:
        now = dt.datetime.now(dt.UTC)
        measures = await control.resolve_unconfirmed(ctx, now)
        return measures, await control.resolve_actions(ctx, now)

    return at_work(sessions, world, step)  # type: ignore[no-any-return]


def judge_query(sessions: sessionmaker[Session], world: World, case_id: int) -> control.Counts:
    """A judge's case query, as the case-query flow runs it: every registry asked, then the case controlled."""

    async def step(ctx: Context) -> control.Counts:
        with sessions.begin() as session:
            run_id = querying.start_run(session, "case-query")
            debtor_ids = querying.debtor_ids_of_case(session, case_id)
        for code in ctx.registries:
            await querying.query_batch(ctx, code, run_id, debtor_ids)
        return await control.control_cases(ctx, [case_id])

    return at_work(sessions, world, step)  # type: ignore[no-any-return]


def release(sessions: sessionmaker[Session], world: World) -> lifecycle.Released:
    return at_work(  # type: ignore[no-any-return]
        sessions, world, lambda ctx: lifecycle.release_due(ctx, ReleaseOrder.NEWEST)
    )


def bank_freezes(session: Session) -> list[ControlMeasure]:
    return list(
        session.scalars(
            select(ControlMeasure)
            .join(Registry, Registry.id == ControlMeasure.registry_id)
            .where(ControlMeasure.kind == "freeze", Registry.code.in_(BANKS))
            .order_by(ControlMeasure.id)
        )
    )


def flags(session: Session) -> int:
    return (
        session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "measure.invalid_reply")
        )
        or 0
    )


def told(session: Session) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(Notification)
            .where(Notification.template == "registry.invalid_reply", Notification.recipient == "judge")
        )
        or 0
    )


def held_at_the_banks(world: World, keys: list[str]) -> int:
    ledger = world.ledger_measures()
    return sum(
        getattr(ledger[k], "held_fen", 0) or 0
        for k in keys
        if k in ledger and getattr(ledger[k], "status", "") == "effective"
    )


def assert_cap_at_the_ledgers(sessions: sessionmaker[Session], world: World) -> int:
    """What each case's freezes hold at the banks is never more than it owes, nor more than our book
    counts against the cap (nothing held goes uncounted). Returns how many cases hold anything."""
    holding = 0
    with sessions() as session:
        for case in session.scalars(select(Case)):
            ours = list(session.scalars(select(ControlMeasure).where(ControlMeasure.case_id == case.id)))
            held = held_at_the_banks(world, [m.idempotency_key for m in ours])
            owed = cases.owed(case, TODAY).remaining
            assert held <= owed, f"{case.case_number}: {held} held at the banks, {owed} owed"
            assert held <= control.claims(session, case.id), f"{case.case_number}: held, uncounted"
            holding += held > 0
    return holding


@pytest.mark.parametrize("amount", UNREADABLE)
def test_freezes_answered_unreadably_keep_their_claims_and_are_settled_once_the_bank_reads_again(
    sessions: sessionmaker[Session], world: World, amount: Any
) -> None:
    garble(world, amount)
    swept = sweep(sessions, world)
    with sessions() as session:
        freezes = bank_freezes(session)
        assert freezes, "the world's debtors hold deposits"
        assert {m.status for m in freezes} == {"requested"}, "an unreadable answer is never a refusal"
        assert all(m.actual_amount_fen is None for m in freezes), "nothing of the answer is recorded"
        assert flags(session) == told(session) == len(freezes), "each flagged once, its judge told"
        failed = session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "measure.failed")
        )
        assert failed == 0
    assert sum(swept.control.invalid_replies.values()) == len(freezes)
    ledger = world.ledger_measures()
    assert all(m.idempotency_key in ledger for m in freezes), "the bank applied every freeze"
    assert assert_cap_at_the_ledgers(sessions, world) > 0

    collect(sessions, world)  # asked by key: still unreadable; not flagged again, nothing sent twice
    with sessions() as session:
        assert {m.status for m in bank_freezes(session)} == {"requested"}
        assert flags(session) == len(freezes)

    # A judge queries the case whose freezes hold the most: nothing is frozen twice.
    with sessions() as session:
        by_case: dict[int, list[str]] = {}
        for m in bank_freezes(session):
            by_case.setdefault(m.case_id, []).append(m.idempotency_key)
    case_id = max(by_case, key=lambda c: held_at_the_banks(world, by_case[c]))
    before = len(world.ledger_measures())
    queried = judge_query(sessions, world, case_id)
    assert queried.requested == 0, "the case's freezes claim what it owes: nothing more is asked"
    assert len(world.ledger_measures()) == before
    assert_cap_at_the_ledgers(sessions, world)

    # The debtor pays in full: the release cannot lift what it cannot identify; a person is told.
    with sessions.begin() as session:
        case = session.get(Case, case_id)
        assert case is not None
        number = case.case_number
        cases.record_payment(
            session, number, cases.owed(case, TODAY).remaining, TODAY, actor=ACTOR, today=TODAY
        )
    released = release(sessions, world)
    held = by_case[case_id]
    assert {h.measure_id for h in released.to_check if h.case_number == number} == {
        m.id for m in freezes if m.case_id == case_id
    }
    for hold in released.to_check:
        assert "its answer cannot be read" in hold.problem and hold.registry in BANKS
        assert all(account not in hold.words() for account in world_accounts(world))
    with sessions() as session:
        sheet = control.case_sheet(session, number, TODAY, control.Policy())
    assert {h.measure_id for h in sheet.to_check} == {m.id for m in freezes if m.case_id == case_id}
    assert "For a person" in sheet.markdown()

    # The bank is mended: the next collect records the truth, and the release lifts the paid case.
    mend(world)
    collect(sessions, world)
    with sessions() as session:
        assert {m.status for m in bank_freezes(session)} <= {"effective", "queued"}
        assert flags(session) == len(freezes), "settled, not flagged again"
    released = release(sessions, world)
    assert released.to_check == ()
    assert held_at_the_banks(world, held) == 0, "the paid case holds nothing at the banks"
    assert_cap_at_the_ledgers(sessions, world)


def world_accounts(world: World) -> set[str]:
    return {h.identifier for code in BANKS for h in world.simulators[code].ledger.holdings.values()}


def test_renewals_releases_and_deductions_answered_unreadably_are_unknown_never_done_or_refused(
    sessions: sessionmaker[Session], world: World
) -> None:
    sweep(sessions, world)  # readable: freezes in force
    with sessions() as session:
        effective = [m for m in bank_freezes(session) if m.status == "effective" and m.actual_amount_fen]
        one_a_case = list({m.case_id: m for m in reversed(effective)}.values())
        assert len(one_a_case) >= 3, "three cases with a freeze in force"
        paid, renewed, deducted = one_a_case[:3]
    garble(world, "NaN")

    # A release of a case paid in full.
    with sessions.begin() as session:
        case = session.get(Case, paid.case_id)
        assert case is not None
        cases.record_payment(
            session, case.case_number, cases.owed(case, TODAY).remaining, TODAY, actor=ACTOR, today=TODAY
        )
    released = release(sessions, world)
    with sessions() as session:
        lifted = [m for m in bank_freezes(session) if m.case_id == paid.case_id]
        assert lifted and {m.status for m in lifted} == {"effective"}, "not counted as released"
    assert released.counts.refused == 0
    assert sum(released.counts.invalid_replies.values()) == len(lifted), "each flagged once"
    assert released.counts.done == released.releases - len(lifted)  # the case's seizures, answered readably
    assert {h.measure_id for h in released.to_check} == {m.id for m in lifted}
    assert world.ledger_measures()[paid.idempotency_key].status == "released"  # type: ignore[attr-defined]

    # A renewal, and a deduction a judge approved.
    with sessions.begin() as session:
        renew = control.write_action(session, renewed.id, "renew", None, "due")
        deduct = control.write_action(session, deducted.id, "deduct", 100_00, "approved by 李法官")
        before = session.scalar(select(Payment.id).order_by(Payment.id.desc()).limit(1)) or 0
    sent = at_work(sessions, world, lambda ctx: control.send_actions(ctx, [renew.id, deduct.id]))
    assert (sent.done, sent.refused, sent.unconfirmed) == (0, 0, 2)
    assert sum(sent.invalid_replies.values()) == 2
    ledger = world.ledger_measures()
    with sessions() as session:
        statuses = {
            action.id: action.status
            for action in session.scalars(
                select(MeasureAction).where(MeasureAction.id.in_([renew.id, deduct.id]))
            )
        }
        assert statuses == {renew.id: "requested", deduct.id: "requested"}
        measure = session.get(ControlMeasure, renewed.id)
        assert measure is not None and measure.expires_on == renewed.expires_on
        assert session.scalar(select(func.count()).select_from(Payment).where(Payment.id > before)) == 0
        flagged_actions = {
            (n.params or {}).get("action")
            for n in session.scalars(
                select(Notification).where(Notification.template == "registry.invalid_reply")
            )
        }
        assert {renew.id, deduct.id} <= flagged_actions
    moved = [amount for key, amount in world.simulators[_bank_of(world, deducted)].ledger.deducted]
    assert moved == [100_00], "the bank moved the money once"
    assert ledger[renewed.idempotency_key].end > renewed.expires_on  # type: ignore[attr-defined]

    collect(sessions, world)  # still unreadable: nothing flagged again, nothing moved twice
    with sessions() as session:
        assert told(session) == flags(session)
    assert [a for _, a in world.simulators[_bank_of(world, deducted)].ledger.deducted] == [100_00]

    mend(world)
    _, actions = collect(sessions, world)
    assert actions.done == len(lifted) + 2 and actions.refused == 0
    with sessions() as session:
        assert (
            session.scalar(
                select(func.count())
                .select_from(Payment)
                .where(Payment.id > before, Payment.source == "deduction")
            )
            == 1
        ), "the deduction recorded once"
        measure = session.get(ControlMeasure, paid.id)
        assert measure is not None and measure.status == "released"
        measure = session.get(ControlMeasure, renewed.id)
        assert measure is not None and measure.expires_on is not None
        assert renewed.expires_on is not None and measure.expires_on > renewed.expires_on
    assert [a for _, a in world.simulators[_bank_of(world, deducted)].ledger.deducted] == [100_00]
    assert_cap_at_the_ledgers(sessions, world)


def _bank_of(world: World, measure: ControlMeasure) -> str:
    return next(code for code in BANKS if measure.idempotency_key in world.simulators[code].ledger.answers)


def test_a_paid_case_whose_holds_were_flagged_gets_a_task_for_a_person_until_the_bank_answers_true(
    sessions: sessionmaker[Session], world: World
) -> None:
    """Issue 36, also seen: a paid case holding freezes the clerk flagged (the bank named another account)
    was released "0 of 0" with no word to anyone, its money frozen at the bank."""
    for code in BANKS:
        world.simulators[code].hostile = Hostile(names_other_account=True)
    sweep(sessions, world)
    with sessions.begin() as session:
        flagged = [m for m in bank_freezes(session) if m.status == "requested"]
        assert flagged
        case = session.get(Case, flagged[0].case_id)
        assert case is not None
        number, mine = case.case_number, {m.id for m in flagged if m.case_id == case.id}
        cases.record_payment(
            session, number, cases.owed(case, TODAY).remaining, TODAY, actor=ACTOR, today=TODAY
        )
    released = release(sessions, world)
    assert {h.measure_id for h in released.to_check if h.case_number == number} == mine
    assert all("it names another account" in h.problem for h in released.to_check)
    mend(world)  # the bank answers true again: the release asks by key first, and lifts them in one run
    released = release(sessions, world)
    assert released.to_check == ()
    with sessions() as session:
        assert {m.status for m in bank_freezes(session) if m.id in mine} == {"released"}
    assert_cap_at_the_ledgers(sessions, world)
