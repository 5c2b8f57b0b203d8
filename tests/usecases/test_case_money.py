"""Case money (clerk.money) at the simulated court's bank, on SQLite and PostgreSQL: every case has its
sub-account, a deduction's money lands on it and is counted once, a debtor's own transfer is a payment,
repeated, late and reversed lines change nothing twice, money nobody can place waits for a person, and
reconciliation finds the bank's errors without touching the journal. The simulator's books are the
referee."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from clerk import control, querying, sweeping
from clerk.casebook import cases
from clerk.context import Context
from clerk.money import arriving, journal, reconcile, subaccounts, unidentified
from clerk.store import db
from models.money import Account
from models.tables import AuditEvent, Case, MoneyEntry, MoneyLeg, Payment, StatementLine, Subaccount
from models.values import InvalidValue
from tests.fakes import FakeWorld
from tests.usecases.test_exactly_once import ACTOR, NOW, TODAY, approved_deduction, world_in_book

JUDGE = "李法官"


def ctx_of(sessions: sessionmaker[Session], world: FakeWorld) -> Context:
    return world.context(sessions, at=NOW, actor=ACTOR, court_account=world.court_bank.sim.books.master)


def take(sessions: sessionmaker[Session], world: FakeWorld) -> arriving.Arrived:
    bank = world.court_bank
    return asyncio.run(arriving.take_statement(ctx_of(sessions, world), bank, bank.sim.books.master))


def reconciled(sessions: sessionmaker[Session], world: FakeWorld) -> reconcile.Reconciliation:
    return asyncio.run(reconcile.reconcile(ctx_of(sessions, world), world.court_bank))


def opened_world(sessions: sessionmaker[Session], tmp: Path, debtors: int = 60, seed: int = 13) -> FakeWorld:
    world = world_in_book(sessions, tmp, debtors=debtors, seed=seed)
    opened = asyncio.run(subaccounts.open_missing(ctx_of(sessions, world), world.court_bank))
    assert opened.failed == 0 and opened.opened > 0
    return world


def sub_of(sessions: sessionmaker[Session], case_number: str) -> str:
    with sessions() as session:
        case = cases.get_case(session, case_number)
        number = session.scalar(select(Subaccount.number).where(Subaccount.case_id == case.id))
    assert number is not None
    return number


def owed_now(sessions: sessionmaker[Session], case_number: str) -> int:
    with sessions() as session:
        return cases.owed(cases.get_case(session, case_number), TODAY).remaining


def money_of(sessions: sessionmaker[Session], case_number: str) -> dict[Account, int]:
    with sessions() as session:
        return journal.case_balances(session, cases.get_case(session, case_number).id)


def entries(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(MoneyEntry)) or 0)


def first_case(sessions: sessionmaker[Session]) -> str:
    with sessions() as session:
        number = session.scalars(select(Case.case_number).order_by(Case.id)).first()
    assert number is not None
    return number


def test_every_case_gets_its_own_subaccount_once_even_when_the_banks_reply_is_lost(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    world = world_in_book(sessions, tmp_path, debtors=30, seed=3)
    world.court_bank.lose_replies = 2
    first = asyncio.run(subaccounts.open_missing(ctx_of(sessions, world), world.court_bank))
    assert first.failed == 2 and first.opened > 0
    second = asyncio.run(subaccounts.open_missing(ctx_of(sessions, world), world.court_bank))
    assert second == subaccounts.Opened(2, 0)
    with sessions() as session:
        numbers = list(session.scalars(select(Subaccount.number)))
        book = int(session.scalar(select(func.count()).select_from(Case)) or 0)
    assert len(numbers) == len(set(numbers)) == book == len(world.court_bank.sim.books.cases)
    assert asyncio.run(subaccounts.open_missing(ctx_of(sessions, world), world.court_bank)).opened == 0


def test_a_deductions_money_lands_on_its_cases_subaccount_and_is_counted_once(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    world = opened_world(sessions, tmp_path)
    asyncio.run(sweeping.sweep_due(ctx_of(sessions, world), querying.Schedule()))
    number, proposal, ids = approved_deduction(sessions)
    sent = asyncio.run(control.send_actions(ctx_of(sessions, world), ids))
    assert sent.done == len(ids)
    books = world.court_bank.sim.books
    sub = sub_of(sessions, number)
    assert books.balances(len(books.entries))[sub] == proposal.total_fen, "paid into the case's sub-account"

    arrived = take(sessions, world)
    assert arrived.placed == {"deduction": len(ids)} and arrived.fen == proposal.total_fen
    with sessions() as session:
        payments = session.scalars(select(Payment.source).join(Case).where(Case.case_number == number)).all()
    assert payments == ["deduction"] * len(ids), "the reply recorded the payment; the statement line did not"
    held = money_of(sessions, number)
    assert held[Account.BANK] == proposal.total_fen
    assert held.get(Account.FEES, 0) + held.get(Account.APPLICANT, 0) + held.get(Account.REFUNDABLE, 0) == (
        proposal.total_fen
    )
    assert Account.RECEIVED not in held, "everything received was split"

    assert take(sessions, world).lines == 0, "read again: nothing new"
    assert reconciled(sessions, world).agreed


def first_case_owing(sessions: sessionmaker[Session]) -> tuple[str, int, int]:
    """The first case: its number, what it owes today, and its fee and costs."""
    number = first_case(sessions)
    with sessions() as session:
        case = cases.get_case(session, number)
        fee_and_costs = cases.owed(case, TODAY).fee + case.costs_fen
    return number, owed_now(sessions, number), fee_and_costs


def test_a_debtors_own_transfer_becomes_a_payment_split_fees_first(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    world = opened_world(sessions, tmp_path)
    number, before, fee_and_costs = first_case_owing(sessions)
    sim = world.court_bank.sim
    sim.credit(before - 100, sub_of(sessions, number), payer_name="张三", payer_account="6222020200001111")
    assert take(sessions, world).placed == {"transfer": 1}
    assert owed_now(sessions, number) == 100
    held = money_of(sessions, number)
    assert held[Account.FEES] == fee_and_costs and held[Account.APPLICANT] == before - 100 - fee_and_costs

    sim.credit(100, sub_of(sessions, number))
    assert take(sessions, world).placed == {"transfer": 1}
    with sessions() as session:
        assert cases.get_case(session, number).status == "paid", "paid in full: released as today"
    assert reconciled(sessions, world).agreed


def test_a_payment_in_full_reversed_in_the_same_page_reopens_the_case_and_gives_the_fee_back(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    """One page: a transfer pays the case in full, the bank reverses it, the debtor pays part again.
    The case runs again, the fee is taken once (from the second payment), one payment stands."""
    world = opened_world(sessions, tmp_path)
    number, before, fee_and_costs = first_case_owing(sessions)
    sim, sub = world.court_bank.sim, sub_of(sessions, number)
    full = sim.credit(before, sub)
    sim.reverse(full.reference)
    sim.credit(before // 2, sub)
    assert take(sessions, world).placed == {"transfer": 2, "reversal": 1}
    with sessions() as session:
        case = cases.get_case(session, number)
        assert case.status == "active" and [p.amount_fen for p in case.payments] == [before // 2]
        actions = list(session.scalars(select(AuditEvent.action).where(AuditEvent.case_number == number)))
    assert {"case.paid", "payment.reversed", "case.reopened"} <= set(actions)
    held = money_of(sessions, number)
    assert held[Account.FEES] == fee_and_costs, "the fee taken once: the reversal gave the first one back"
    assert held[Account.APPLICANT] == before // 2 - fee_and_costs
    assert owed_now(sessions, number) == before - before // 2
    assert reconciled(sessions, world).agreed


def test_two_runs_reading_the_same_page_at_once_record_it_once(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    """A run that listens and the next one overlap: both read the page at the cursor; the second to record
    it waits for the first (the cursor's lock) and finds its lines known."""
    world = opened_world(sessions, tmp_path)
    numbers = [first_case(sessions)]
    sim, bank = world.court_bank.sim, world.court_bank
    for _ in range(3):
        sim.credit(1_00, sub_of(sessions, numbers[0]))

    async def both() -> list[arriving.Arrived]:
        ctx = ctx_of(sessions, world)
        return list(
            await asyncio.gather(*(arriving.take_statement(ctx, bank, sim.books.master) for _ in "ab"))
        )

    first, second = asyncio.run(both())
    assert sorted([first.placed["transfer"], second.placed["transfer"]]) == [0, 3]
    assert first.placed["repeated"] + second.placed["repeated"] == 3, "the later found them known"
    with sessions() as session:
        assert (
            session.scalar(select(func.count()).select_from(Payment).where(Payment.source == "transfer")) == 3
        )
    assert reconciled(sessions, world).agreed


def test_repeated_late_and_reversed_lines_change_nothing_twice(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    world = opened_world(sessions, tmp_path)
    number = first_case(sessions)
    before = owed_now(sessions, number)
    sim = world.court_bank.sim
    sim.hostile.repeat_entries = True
    late = sim.credit(1_000_00, sub_of(sessions, number), value_date=TODAY - dt.timedelta(days=9))
    arrived = take(sessions, world)
    assert arrived.placed == {"transfer": 1, "repeated": 1}
    assert owed_now(sessions, number) < before
    with sessions() as session:
        paid_on = session.scalar(select(Payment.paid_on).join(Case).where(Case.case_number == number))
    assert paid_on == late.value_date, "a late line counts from the day the money arrived"

    sim.hostile.repeat_entries = False
    sim.reverse(late.reference)
    assert take(sessions, world).placed == {"reversal": 1}
    assert owed_now(sessions, number) == before, "the reversed transfer is no payment"
    assert money_of(sessions, number) == {}, "and no money"
    assert reconciled(sessions, world).agreed


def test_money_nobody_can_place_waits_as_unidentified_until_a_person_assigns_or_returns_it(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    world = opened_world(sessions, tmp_path)
    number = first_case(sessions)
    sim = world.court_bank.sim
    stray = sim.credit(500_00, "95588000000099999999", remittance="货款")  # a sub-account we never issued
    unnamed = sim.credit(300_00, None)
    too_much = sim.credit(owed_now(sessions, number) + 1, sub_of(sessions, number))
    assert take(sessions, world).placed == {"unidentified": 3}
    with sessions() as session:
        waiting = unidentified.waiting(session, TODAY + dt.timedelta(days=4))
    assert [w.reference for w in waiting] == [stray.reference, unnamed.reference, too_much.reference]
    assert all(w.days == 4 for w in waiting)
    assert owed_now(sessions, number) > 0 and money_of(sessions, number).get(Account.APPLICANT) is None

    before = owed_now(sessions, number)
    with pytest.raises(InvalidValue, match="reason"):
        db.in_transaction(
            sessions, unidentified.assign, stray.reference, number, actor=JUDGE, reason="", today=TODAY
        )
    db.in_transaction(
        sessions, unidentified.assign, stray.reference, number, actor=JUDGE, reason="电话核实", today=TODAY
    )
    assert owed_now(sessions, number) == before - 500_00
    db.in_transaction(
        sessions, unidentified.send_back, unnamed.reference, actor=JUDGE, reason="付款人要求退回"
    )
    with pytest.raises(InvalidValue, match="no longer waiting"):
        db.in_transaction(sessions, unidentified.send_back, unnamed.reference, actor=JUDGE, reason="again")
    with sessions() as session:
        assert [w.reference for w in unidentified.waiting(session, TODAY)] == [too_much.reference]
        bureau = journal.bureau_balances(session)
    assert bureau == {Account.UNIDENTIFIED: too_much.amount_fen, Account.TO_RETURN: 300_00}
    assert reconciled(sessions, world).agreed, "the money stays where the bank holds it"


@pytest.mark.parametrize("error", ["unlisted", "phantom", "fen_off"])
def test_reconciliation_finds_the_banks_error_and_leaves_the_journal_alone(
    sessions: sessionmaker[Session], tmp_path: Path, error: str
) -> None:
    world = opened_world(sessions, tmp_path, debtors=20)
    number = first_case(sessions)
    sub = sub_of(sessions, number)
    sim = world.court_bank.sim
    sim.credit(200_00, sub)
    take(sessions, world)
    assert reconciled(sessions, world).agreed
    if error == "fen_off":
        sim.books.off[sub] = 1
    else:
        sim.books.book(7_00, sub, sim.now(), listed=error == "phantom", counted=error == "unlisted")
    kept = entries(sessions)
    found = reconciled(sessions, world)
    assert not found.agreed
    off = {"unlisted": 7_00, "phantom": -7_00, "fen_off": 1}[error]
    assert {(d.subaccount, d.off_by) for d in found.differences} == {(sub, off), (sim.books.master, off)} - (
        {(sim.books.master, 1)} if error == "fen_off" else set()
    )
    if error == "phantom":
        assert entries(sessions) == kept + 2, "the phantom line was read as money (arrived, split) …"
    else:
        assert entries(sessions) == kept, "no adjusting entry"


def test_a_crash_between_the_statement_and_the_journal_loses_nothing_and_counts_nothing_twice(
    sessions: sessionmaker[Session], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = opened_world(sessions, tmp_path)
    sim = world.court_bank.sim
    with sessions() as session:
        numbers = list(session.scalars(select(Case.case_number).order_by(Case.id).limit(5)))
    for number in numbers:
        sim.credit(10_00, sub_of(sessions, number))
    real_write = journal.write

    def dies_writing(*args: object, **kwargs: object) -> object:
        raise RuntimeError("killed")  # after the lines, the payments and the cursor were written

    monkeypatch.setattr(journal, "write", dies_writing)
    with pytest.raises(RuntimeError, match="killed"):
        take(sessions, world)
    assert entries(sessions) == 0 and arriving_cursor(sessions) == 0, "the page rolled back whole"
    monkeypatch.setattr(journal, "write", real_write)
    world.court_bank.lose_replies = 1
    with pytest.raises(Exception, match="reply lost"):
        take(sessions, world)
    assert take(sessions, world).placed == {"transfer": 5}
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(StatementLine)) == 5
        assert (
            session.scalar(select(func.count()).select_from(Payment).where(Payment.source == "transfer")) == 5
        )
        assert session.scalar(select(func.sum(MoneyLeg.fen))) == 0, "the journal balances"
    assert reconciled(sessions, world).agreed


def arriving_cursor(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return arriving.cursor(session)


def test_a_judge_reads_a_cases_money_and_places_unidentified_money_at_the_command_line(
    sessions: sessionmaker[Session], clerk_env: str, tmp_path: Path
) -> None:
    from rich.cells import cell_len
    from typer.testing import CliRunner

    from cli import app

    world = opened_world(sessions, tmp_path, debtors=20)
    number = first_case(sessions)
    with sessions() as session:
        judge = cases.get_case(session, number).judge
    sim = world.court_bank.sim
    sim.credit(21_234_56, sub_of(sessions, number), payer_name="张三丰", payer_account="6222020200001111222")
    stray = sim.credit(300_00, None, remittance="还款 110105194912310021")
    take(sessions, world)

    def clerk(*args: str) -> str:
        result = CliRunner().invoke(app, list(args), terminal_width=80)
        assert result.exit_code == 0, result.output
        assert all(cell_len(line) <= 80 for line in result.stdout.splitlines()), result.stdout
        return result.stdout

    shown = clerk("money", "show", number)
    assert "21,234.56" in shown and "transfer" in shown and "payable to the applicant" in shown
    assert "张三丰" not in shown and "6222020200001111222" not in shown, "who paid is masked"
    waiting = clerk("money", "unidentified")
    assert stray.reference in waiting and "300.00" in waiting and "110105194912310021" not in waiting
    result = CliRunner().invoke(
        app, ["money", "assign", stray.reference, number, "--reason", "", "--actor", judge]
    )
    assert result.exit_code == 2 and "reason" in result.output
    placed = clerk(
        "money", "assign", stray.reference, number, "--reason", "电话核实为被执行人还款", "--actor", judge
    )
    assert "placed with" in placed
    assert "no unidentified money" in clerk("money", "unidentified")
    assert "assigned" in clerk("money", "show", number)
