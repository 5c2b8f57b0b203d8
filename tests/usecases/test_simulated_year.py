"""A simulated year in a minute: the clerk's lifecycle steps run day by day against the simulators over real
HTTP, with a clock the test moves (the simulators move with it). Deposits land, other authorities' measures
lapse (so queued measures take effect), payments are made, judges approve deductions, measures come up for
renewal. After every day and at the end, the simulators' ledgers are the referee.

Checked: nothing is frozen above what is owed on any day; no measure lapses that should have been renewed;
every queued measure that took effect is recorded; every new deposit of a case not yet covered is frozen;
our records and the ledgers agree; every decision is in the audit trail, and the chain verifies.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
from collections import Counter
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from clerk import control, lifecycle, querying, sweeping
from clerk.casebook import cases
from clerk.casebook.casefile import read_case_file
from clerk.casebook.intake import import_cases
from clerk.control import watch
from clerk.store import tree
from connectors.adapter import HttpConnector
from connectors.loader import build
from connectors.simulator.ledger import Ledger
from models.rules import ReleaseOrder
from models.tables import Asset, AuditEvent, Case, CaseDebtor, ControlMeasure, MeasureAction, Payment
from tests.fakes import context_for
from tests.world import World, served_world

START = dt.datetime(2026, 1, 5, 4, 0, tzinfo=dt.UTC)
DAYS = 366
ACTOR = "flow-run:year"
ALLOWED = ["bank-json", "real-estate-xml", "vehicle-json"]
LEAD_DAYS = 30
COURT_ACCOUNT = "95588000000000000001"


class Year:
    """The clerk's scheduled steps, called the way the flows call them, on a simulated day."""

    def __init__(self, sessions: sessionmaker[Session], world: World) -> None:
        self.sessions = sessions
        self.world = world
        self.connectors: dict[str, HttpConnector] = build(world.configs, ALLOWED)
        self.ctx = context_for(
            sessions, self.connectors, world.configs, actor=ACTOR, court_account=COURT_ACCOUNT
        )
        self.payments: list[tuple[str, int]] = []
        self.approvals = 0
        self.deposits_landed = 0

    def move_clock(self, now: dt.datetime) -> None:
        for config in self.world.configs:
            httpx.post(f"{config.base_url}/_sim/clock", json={"now": now.isoformat()}).raise_for_status()

    async def sweep(self, now: dt.datetime) -> None:
        await sweeping.sweep_due(self.ctx.at(now), querying.Schedule())

    async def day(self, now: dt.datetime, rng: random.Random) -> None:
        today = now.date()
        landed = {code: len(sim.ledger.deposit_events) for code, sim in self.world.simulators.items()}
        self.move_clock(now)
        if (today - START.date()).days % 30 == 0:
            await self.sweep(now)
        if rng.random() < 0.15:
            self.pay(today, rng)
        if rng.random() < 0.04:
            await self.deduct(today, rng)
        await self.release(today)
        await self.renew(today)
        await lifecycle.refresh_measures(self.ctx.at(now))
        await watch.poll_once(self.ctx.at(now))
        await self.release(today)  # two banks answering at once can leave an excess: released the same day
        self.check_deposits_frozen(today, landed)

    def check_deposits_frozen(self, today: dt.date, landed: dict[str, int]) -> None:
        """Each account that received money today is frozen to the last fen, unless its cases are covered."""
        with self.sessions() as session:
            for code, sim in self.world.simulators.items():
                for event in sim.ledger.deposit_events[landed[code] :]:
                    self.deposits_landed += 1
                    if free_on_account(sim.ledger, event.identifier) == 0:
                        continue
                    asset = session.scalars(
                        select(Asset).where(
                            Asset.registry_id == self.ctx.registry_ids[code],
                            Asset.identifier == event.identifier,
                        )
                    ).one_or_none()
                    if asset is None:
                        continue  # never found: not this clerk's debtor yet
                    for case in session.scalars(
                        select(Case)
                        .join(CaseDebtor, CaseDebtor.case_id == Case.id)
                        .where(CaseDebtor.debtor_id == asset.debtor_id, Case.status == "active")
                    ):
                        claims = control.claims(session, case.id)
                        assert claims >= cases.owed(case, today).remaining, (case.case_number, today)

    def pay(self, today: dt.date, rng: random.Random) -> None:
        with self.sessions.begin() as session:
            active = session.scalars(select(Case).where(Case.status == "active").order_by(Case.id)).all()
            if not active:
                return
            case = rng.choice(active)
            owed = cases.owed(case, today).remaining
            amount = owed if rng.random() < 0.3 else max(owed // rng.choice((3, 5, 10)), 1)
            cases.record_payment(session, case.case_number, amount, today, actor="user:debtor", today=today)
            self.payments.append((case.case_number, amount))

    async def deduct(self, today: dt.date, rng: random.Random) -> None:
        with self.sessions() as session:
            frozen_cases = session.scalars(
                select(Case.case_number)
                .join(ControlMeasure, ControlMeasure.case_id == Case.id)
                .where(ControlMeasure.status == "effective", ControlMeasure.actual_amount_fen > 0)
                .distinct()
                .order_by(Case.case_number)
            ).all()
        if not frozen_cases:
            return
        number = rng.choice(frozen_cases)
        with self.sessions.begin() as session:
            proposal = lifecycle.propose_deduction(session, number, today)
            if not proposal.lines:
                return
            approved = max(proposal.total_fen // 2, 1)
            ids = lifecycle.approve_deduction(
                session, proposal, approved, "王法官", ACTOR, dt.datetime.now(dt.UTC)
            )
        self.approvals += 1
        tally = await control.send_actions(self.ctx.on(today), ids)
        assert tally.done == len(ids), tally

    async def release(self, today: dt.date) -> None:
        with self.sessions() as session:
            case_ids = lifecycle.cases_to_release(session, today)
        ids: list[int] = []
        for case_id in case_ids:
            with self.sessions.begin() as session:
                ids += lifecycle.plan_release(session, case_id, today, ReleaseOrder.NEWEST, ACTOR)
        tally = await control.send_actions(self.ctx.on(today), ids)
        assert tally.done == len(ids), tally

    async def renew(self, today: dt.date) -> None:
        with self.sessions.begin() as session:
            lapsed = lifecycle.expire_lapsed(session, today, ACTOR)
            assert lapsed == [], f"measures lapsed on {today}: {lapsed}"
            ids = lifecycle.plan_renewals(session, today, LEAD_DAYS, ACTOR)
        tally = await control.send_actions(self.ctx.on(today), ids)
        assert tally.done == len(ids), tally

    async def close(self) -> None:
        await asyncio.gather(*(c.aclose() for c in self.connectors.values()))


def ledgers(world: World) -> list[Ledger]:
    return [sim.ledger for sim in world.simulators.values()]


def check_cap(sessions: sessionmaker[Session], world: World, today: dt.date) -> None:
    """What the ledgers hold for each case is no more than the case owes today."""
    held: Counter[str] = Counter()
    for ledger in ledgers(world):
        for m in ledger.measures.values():
            if m.status == "effective" and m.held_fen:
                held[m.key] += m.held_fen
    with sessions() as session:
        keys: dict[int, list[str]] = {}
        for case_id, key in session.execute(select(ControlMeasure.case_id, ControlMeasure.idempotency_key)):
            keys.setdefault(case_id, []).append(key)
        for case in session.scalars(select(Case)):
            frozen = sum(held[k] for k in keys.get(case.id, []))
            owed = cases.owed(case, today).remaining
            assert frozen <= owed, f"{case.case_number} on {today}: {frozen} fen frozen, {owed} owed"


def free_on_account(ledger: Ledger, identifier: str) -> int:
    holding = ledger.holdings[identifier]
    assert holding.balance_fen is not None
    others = sum(r.amount_fen or holding.balance_fen for r in holding.restrictions if r.until >= ledger.today)
    ours = sum(
        m.held_fen or 0
        for m in ledger.measures.values()
        if m.identifier == identifier and m.status == "effective"
    )
    return max(holding.balance_fen - others - ours, 0)


@pytest.mark.minutes
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_simulated_year(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    rng = random.Random(2026)
    with served_world(tmp_path, debtors=50, seed=8, now=START) as world:
        for ledger in ledgers(world):  # deposits all year round: up to three per account
            for holding in list(ledger.holdings.values()):
                for _ in range(rng.randrange(0, 4) if holding.balance_fen is not None else 0):
                    at = START + dt.timedelta(days=rng.randrange(1, DAYS), hours=rng.randrange(0, 20))
                    ledger.schedule_deposit(at, holding.identifier, rng.randrange(1_000_00, 60_000_00))
        rows, _ = read_case_file(world.case_file, max_bytes=10**8, today=START.date())
        with sessions.begin() as session:
            import_cases(session, rows, actor=ACTOR)
        year = Year(sessions, world)

        async def run() -> None:
            try:
                for offset in range(DAYS):
                    now = START + dt.timedelta(days=offset)
                    await year.day(now, rng)
                    check_cap(sessions, world, now.date())
            finally:
                await year.close()

        asyncio.run(run())
        measures_by_key = {m.key: m for ledger in ledgers(world) for m in ledger.measures.values()}

        with sessions() as session:
            ours = session.scalars(select(ControlMeasure)).all()
            # Records and ledgers agree, measure by measure.
            assert len(ours) == len(measures_by_key) > 0
            status_map = {"effective": "effective", "queued": "queued", "released": "released"}
            for m in ours:
                theirs = measures_by_key[m.idempotency_key]
                assert status_map[theirs.status] == m.status, (m.id, m.status, theirs.status)
                if m.status == "effective":
                    assert m.expires_on == theirs.end, (m.id, m.expires_on, theirs.end)
                    if m.kind == "freeze":
                        assert m.actual_amount_fen == theirs.held_fen, (
                            m.id,
                            m.actual_amount_fen,
                            theirs.held_fen,
                        )
            # No measure lapsed that should have been renewed (expire_lapsed found none, every day).
            assert not [m for m in ours if m.status == "expired"]
            renewed = session.scalar(
                select(func.count())
                .select_from(MeasureAction)
                .where(MeasureAction.kind == "renew", MeasureAction.status == "done")
            )
            assert renewed and renewed > 0  # a year of one-year freezes: renewals happened

            # Every queued measure that took effect is recorded as effective (the comparison above), and some
            # did: other authorities' measures lapsed during the year.
            def measures_with(action: str) -> set[int]:
                payloads = session.scalars(select(AuditEvent.payload).where(AuditEvent.action == action))
                return {json.loads(p)["measure"] for p in payloads}

            became_effective = len(measures_with("measure.effective"))
            promoted = measures_with("measure.queued") & measures_with("measure.effective")
            assert promoted, "a queued measure took effect during the year"
            # Every decision is in the audit trail.
            counted = Counter(session.scalars(select(AuditEvent.action)))
            assert counted["payment.recorded"] == len(year.payments) > 0
            assert counted["deduction.approved"] == year.approvals > 0
            assert counted["deduction.transferred"] >= year.approvals
            assert counted["measure.renewed"] == renewed
            deducted = session.scalar(
                select(func.coalesce(func.sum(Payment.amount_fen), 0)).where(Payment.source == "deduction")
            )
            assert deducted == sum(amount for ledger in ledgers(world) for _, amount in ledger.deducted)
            assert counted["deposit.arrived"] > 0
            assert year.deposits_landed > 40
            assert tree.verify(session).ok
            print(  # with -s: what the year held
                f"\nsimulated year: {len(ours)} measures, {renewed} renewals, {became_effective} took effect "
                f"({len(promoted)} of them from a queue), {counted['measure.released'] + counted['measure.partially_released']} "
                f"releases, {year.deposits_landed} deposits, {len(year.payments)} payments, "
                f"{year.approvals} deductions, {len(counted)} kinds of audit event"
            )
