"""A hypothesis state machine of the measure lifecycle: deposits land, other authorities' measures lapse,
the clerk queries and freezes (fully, partly, or queued), the debtor pays, judges approve deductions, time
passes so that measures come up for renewal. After every step, and the clerk's routine that follows each
(settle, release, refresh), the rules hold:

- no case holds more at the bank than it owes that day;
- every measure the bank holds is one of ours, and every one we hold in force the bank holds;
- no measure in force has lapsed, and none is left unconfirmed;
- what we record as held is what the bank holds; deductions recorded are deductions made;
- the audit trail verifies.

The bank is the simulator's own app, reached through httpx's ASGI transport (no sockets), and the case book
is a SQLite file: each example starts from scratch.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import tempfile
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from pydantic import SecretStr
from sqlalchemy import func, select

from clerk import control, lifecycle, querying
from clerk.casebook import cases
from clerk.casebook.casefile import FIELDS, read_case_file
from clerk.casebook.intake import import_cases
from clerk.context import Context
from clerk.store import db, tree
from connectors.bank import BankConnector
from connectors.base import RegistryKind
from connectors.config import RegistryConfig
from connectors.http import ClientLimits, RegistryClient
from connectors.simulator.bank import BankSimulator
from connectors.simulator.ledger import Restriction
from connectors.simulator.synthetic import resident_id
from models.rules import ReleaseOrder
from models.status import MeasureStatus, may_move
from models.tables import Case, ControlMeasure, MeasureAction, Payment
from tests.fakes import context_for

START = dt.date(2026, 3, 2)
ACTOR = "flow-run:state-machine"
COURT_ACCOUNT = "95588000000000000001"
CODE = "bank-s"
ACCOUNTS = ["62220000000000000001", "62220000000000000002", "62220000000000000003"]


class Lifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.today = START
        self.bank = BankSimulator(CODE, "tok", today=START)
        owner = resident_id(random.Random(7), "410185")
        for i, account in enumerate(ACCOUNTS):
            restrictions = (
                [Restriction("（2025）京0105执1号", 40_000_00, START + dt.timedelta(days=20))]
                if i == 2
                else []
            )
            self.bank.add_account(owner, account, [60_000_00, 15_000_00, 50_000_00][i], restrictions)
        engine = db.make_engine(f"sqlite:///{Path(self.tmp.name) / 'clerk.db'}")
        db.upgrade(engine)
        self.sessions = db.session_factory(engine)
        case_file = Path(self.tmp.name) / "case.csv"
        filed, due = START - dt.timedelta(days=10), START - dt.timedelta(days=40)
        case_file.write_text(
            ",".join(FIELDS)
            + "\n"
            + f"(2026)豫0185执77号,{filed},李法官,某某公司,100000,,,{due},person,{owner},张三\n",
            encoding="utf-8",
        )
        rows, _ = read_case_file(case_file, max_bytes=10**6, today=START)
        with self.sessions.begin() as session:
            import_cases(session, rows, actor=ACTOR)
            self.registry_ids = querying.ensure_registries(session, [self.config()])
            self.case_id = session.scalars(select(Case.id)).one()
        self.deducted = 0

    def config(self) -> RegistryConfig:
        return RegistryConfig(
            code=CODE,
            name=CODE,
            kind=RegistryKind.BANK,
            adapter="bank-json",
            base_url="http://bank.test",
            credential=SecretStr("tok"),
        )

    def context(self, connector: BankConnector) -> Context:
        """The use cases' context on the machine's day, with the bank behind `connector`."""
        return context_for(
            self.sessions,
            {CODE: connector},
            [self.config()],
            at=self.today,
            actor=ACTOR,
            court_account=COURT_ACCOUNT,
        )

    def teardown(self) -> None:
        self.sessions.kw["bind"].dispose()
        self.tmp.cleanup()

    def run(self, step: str, **args: int) -> None:
        asyncio.run(self._run(step, **args))

    async def _run(self, step: str, **args: int) -> None:
        transport = httpx.ASGITransport(app=self.bank.app)
        limits = ClientLimits(requests_per_second=0, backoff_initial_s=0.001, max_attempts=2)
        connector = BankConnector(
            RegistryClient(CODE, "http://bank.test", SecretStr("tok"), limits, transport=transport)
        )
        ctx = self.context(connector)
        try:
            if step == "query":
                with self.sessions.begin() as session:
                    run_id = querying.start_run(session, "state-machine")
                    debtors = querying.debtor_ids_of_case(session, self.case_id)
                await querying.query_batch(ctx, CODE, run_id, debtors)
                await control.control_cases(ctx, [self.case_id])
            elif step == "control":  # planned from what the clerk knows, which the bank may have outrun
                await control.control_cases(ctx, [self.case_id])
            elif step == "deduct":
                with self.sessions.begin() as session:
                    proposal = lifecycle.propose_deduction(session, "（2026）豫0185执77号", self.today)
                    if not proposal.lines:
                        return
                    amount = max(proposal.total_fen * args["percent"] // 100, 1)
                    ids = lifecycle.approve_deduction(
                        session, proposal, amount, "李法官", ACTOR, dt.datetime.now(dt.UTC)
                    )
                tally = await control.send_actions(ctx, ids)
                self.deducted += tally.amount_fen
            # The clerk's routine after every step: lapses and renewals, releases, queued and partial states.
            with self.sessions.begin() as session:
                lifecycle.expire_lapsed(session, self.today, ACTOR)
                renewals = lifecycle.plan_renewals(session, self.today, 30, ACTOR)
            await control.send_actions(ctx, renewals)
            with self.sessions() as session:
                to_release = lifecycle.cases_to_release(session, self.today)
            for case_id in to_release:
                with self.sessions.begin() as session:
                    ids = lifecycle.plan_release(session, case_id, self.today, ReleaseOrder.NEWEST, ACTOR)
                await control.send_actions(ctx, ids)
            await lifecycle.refresh_measures(ctx)
        finally:
            await connector.aclose()

    # --- what happens ---

    @initialize()
    def the_first_query(self) -> None:
        self.run("query")

    @rule()
    def clerk_queries_and_controls(self) -> None:
        self.run("query")

    @rule(account=st.sampled_from(ACCOUNTS), yuan=st.integers(1, 80_000))
    def a_deposit_lands(self, account: str, yuan: int) -> None:
        self.bank.ledger.deposit(account, yuan * 100, dt.datetime.combine(self.today, dt.time(), dt.UTC))
        self.run("routine")

    @rule(account=st.sampled_from(ACCOUNTS), percent=st.integers(10, 100))
    def the_debtor_withdraws(self, account: str, percent: int) -> None:
        """Money not frozen leaves the account: what the clerk last saw is stale, a freeze comes out partial."""
        holding = self.bank.ledger.holdings[account]
        assert holding.balance_fen is not None
        held = sum(
            m.held_fen or 0
            for m in self.bank.ledger.measures.values()
            if m.identifier == account and m.status == "effective"
        )
        holding.balance_fen -= max(holding.balance_fen - held, 0) * percent // 100
        self.run("control")

    @rule(account=st.sampled_from(ACCOUNTS), days=st.integers(5, 60))
    def another_court_freezes_the_account(self, account: str, days: int) -> None:
        """Another authority's measure lands after our query: our next freeze there queues behind it, and
        takes effect when it lapses."""
        self.bank.ledger.holdings[account].restrictions.append(
            Restriction("（2026）京0105执9号", None, self.today + dt.timedelta(days=days))
        )
        self.run("control")

    @rule(days=st.sampled_from([1, 7, 25, 100, 200]))
    def time_passes(self, days: int) -> None:
        """Days pass; the clerk's daily routine runs at least every 25 days (it runs daily in production)."""
        while days > 0:
            hop = min(days, 25)
            days -= hop
            self.today += dt.timedelta(days=hop)
            self.bank.ledger.advance(dt.datetime.combine(self.today, dt.time(12), dt.UTC))
            self.run("routine")

    @rule(percent=st.integers(5, 100))
    def the_debtor_pays(self, percent: int) -> None:
        with self.sessions.begin() as session:
            case = session.get(Case, self.case_id)
            assert case is not None
            owed = cases.owed(case, self.today).remaining
            if owed == 0 or case.status != "active":
                return
            amount = max(owed * percent // 100, 1)
            # Each step is a payment of its own: the same amount on the same day is a second one (`again`).
            cases.record_payment(
                session,
                case.case_number,
                amount,
                self.today,
                actor="user:debtor",
                today=self.today,
                again=True,
            )
        self.run("routine")

    @rule(percent=st.integers(10, 100))
    def a_judge_approves_a_deduction(self, percent: int) -> None:
        self.run("deduct", percent=percent)

    # --- what must hold ---

    @invariant()
    def the_cap_holds(self) -> None:
        ours = self.our_keys()
        held = sum(
            m.held_fen or 0
            for m in self.bank.ledger.measures.values()
            if m.key in ours and m.status == "effective"
        )
        with self.sessions() as session:
            case = session.get(Case, self.case_id)
            assert case is not None
            assert held <= cases.owed(case, self.today).remaining

    @invariant()
    def records_and_the_bank_agree(self) -> None:
        ours = self.our_measures()
        theirs = {m.key: m for m in self.bank.ledger.measures.values()}
        assert set(theirs) <= set(ours)
        for key, measure in ours.items():
            assert measure.status != "requested", "nothing left unconfirmed"
            assert measure.status != "expired", "a measure that should have been renewed lapsed"
            if measure.status in ("effective", "queued"):
                assert theirs[key].status == measure.status
            if measure.status == "effective":  # a queued measure's term starts when it takes effect
                assert measure.expires_on is None or measure.expires_on >= self.today, (
                    "nothing in force lapsed"
                )
            if measure.status == "effective":
                assert measure.actual_amount_fen == theirs[key].held_fen
        assert self.deducted == sum(amount for _, amount in self.bank.ledger.deducted)
        with self.sessions() as session:
            deductions = session.scalar(
                select(func.coalesce(func.sum(Payment.amount_fen), 0)).where(Payment.source == "deduction")
            )
            assert deductions == self.deducted
            assert tree.verify(session).ok

    @invariant()
    def every_move_is_in_the_transition_table(self) -> None:
        """Each measure moved only as models.status.TRANSITIONS allows, step by step."""
        seen = self.__dict__.setdefault("statuses", {})
        for key, measure in self.our_measures().items():
            before = seen.get(key, MeasureStatus.REQUESTED)
            assert may_move(before, measure.status), f"{before} -> {measure.status}"
            seen[key] = measure.status

    @invariant()
    def note_what_happened(self) -> None:
        """For `pytest --hypothesis-show-statistics`: which states the examples reached."""
        for measure in self.our_measures().values():
            event(f"a measure {measure.status}")
            if (
                measure.status == "effective"
                and (measure.actual_amount_fen or 0) < measure.requested_amount_fen
            ):
                event("a measure partial")
        with self.sessions() as session:
            for action in session.scalars(select(MeasureAction)):
                event(f"a {action.kind} {action.status}")

    def our_measures(self) -> dict[str, ControlMeasure]:
        with self.sessions() as session:
            return {m.idempotency_key: m for m in session.scalars(select(ControlMeasure))}

    def our_keys(self) -> set[str]:
        return set(self.our_measures())


Lifecycle.TestCase.settings = settings(
    max_examples=30, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestLifecycle = pytest.mark.minutes(Lifecycle.TestCase)


class LongLifecycle(Lifecycle):
    pass


LongLifecycle.TestCase.settings = settings(
    max_examples=300, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestLifecycleLong = pytest.mark.long(LongLifecycle.TestCase)


def test_an_unconfirmed_deduction_is_settled_once_by_its_key() -> None:
    """A deduction written down whose sending was interrupted, and one the bank applied but whose reply was
    lost: the collect step's `resolve_actions` settles both, and no money moves twice."""
    machine = Lifecycle()
    try:
        machine.the_first_query()
        with machine.sessions.begin() as session:
            proposal = lifecycle.propose_deduction(session, "（2026）豫0185执77号", machine.today)
            ids = lifecycle.approve_deduction(
                session, proposal, 2_000_00, "李法官", ACTOR, dt.datetime.now(dt.UTC)
            )
            applied = session.get(MeasureAction, ids[0])
            assert applied is not None
            measure = session.get(ControlMeasure, applied.measure_id)
            assert measure is not None and measure.registry_reference
            key, reference = applied.idempotency_key, measure.registry_reference
        # The bank applied the first; its reply never came back.
        assert machine.bank.ledger.deduct(key, reference, 2_000_00) is not None

        async def resolve() -> control.Counts:
            transport = httpx.ASGITransport(app=machine.bank.app)
            client = RegistryClient(
                CODE,
                "http://bank.test",
                SecretStr("tok"),
                ClientLimits(requests_per_second=0),
                transport=transport,
            )
            connector = BankConnector(client)
            try:
                later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
                return await control.resolve_actions(machine.context(connector), later)
            finally:
                await connector.aclose()

        tally = asyncio.run(resolve())
        assert tally.done == 1 and tally.amount_fen == 2_000_00
        assert sum(amount for _, amount in machine.bank.ledger.deducted) == 2_000_00  # moved once
        machine.deducted = 2_000_00
        machine.records_and_the_bank_agree()
        assert asyncio.run(resolve()).planned == 0  # nothing left to settle
    finally:
        machine.teardown()
