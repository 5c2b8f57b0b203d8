"""The simulators' ledger: the registry rules that the contract suite relies on."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt

from connectors.simulator.bank import BankSimulator
from connectors.simulator.ledger import Holding, Ledger, Restriction
from connectors.simulator.serve import _tick
from models.rules import AssetKind

TODAY = dt.date(2026, 11, 23)


def ledger() -> Ledger:
    book = Ledger("bank-a", TODAY)
    book.add(Holding("A1", "owner", AssetKind.DEPOSIT, 1_000))
    book.add(
        Holding(
            "A2",
            "owner",
            AssetKind.DEPOSIT,
            1_000,
            restrictions=[Restriction("other", 600, dt.date(2027, 1, 31))],
        )
    )
    book.add(Holding("H1", "owner", AssetKind.REAL_ESTATE, description="x|1"))
    return book


def test_the_first_answer_to_a_key_is_kept_as_it_was() -> None:
    book = ledger()
    first = book.place("k1", "c", "A1", 800, 1)
    assert first.measure is not None
    book.release("k2", first.measure.number, 300)
    again = book.place("k1", "c", "A1", 5, 1)
    assert again == first and again.measure is not None and again.measure.held_fen == 800
    assert book.measures[first.measure.number].held_fen == 500


def test_freezes_take_what_others_and_we_leave() -> None:
    book = ledger()
    assert book.place("k1", "c", "A2", 300, 1).result == "effective"  # 1,000 - 600 by another court = 400
    assert book.measures["bank-a-0000001"].held_fen == 300
    second = book.place("k2", "c", "A2", 300, 1)
    assert (second.result, second.measure.held_fen if second.measure else None) == ("partial", 100)
    third = book.place("k3", "c", "A2", 300, 1)
    assert third.result == "queued" and third.ahead is not None and third.ahead.authority == "other"


def test_wrong_kind_of_measure_and_unknown_assets_are_refused() -> None:
    book = ledger()
    assert book.place("k1", "c", "H1", 100, 3).reason == "wrong_measure_kind"
    assert book.place("k2", "c", "A1", None, 1).reason == "wrong_measure_kind"
    assert book.place("k3", "c", "nope", 100, 1).reason == "no_such_asset"


def test_a_seizure_queues_behind_another_and_takes_effect_when_it_lapses() -> None:
    book = ledger()
    book.holdings["H1"].restrictions.append(Restriction("other", None, dt.date(2027, 3, 31)))
    queued = book.place("k1", "c", "H1", None, 3)
    assert queued.result == "queued" and queued.measure is not None and queued.measure.queue_no == 2
    book.advance(dt.datetime(2027, 4, 1, 9, tzinfo=dt.UTC))
    measure = book.measures[queued.measure.number]
    assert (measure.status, measure.start, measure.end) == (
        "effective",
        dt.date(2027, 4, 1),
        dt.date(2030, 3, 31),
    )


def test_renewal_of_a_lapsed_measure_is_refused() -> None:
    book = ledger()
    placed = book.place("k1", "c", "A1", 100, 1)
    assert placed.measure is not None
    book.advance(dt.datetime(2028, 1, 1, tzinfo=dt.UTC))
    assert book.renew("k2", placed.measure.number, 1) is None


async def test_the_ticker_lands_scheduled_deposits_by_the_wall_clock() -> None:
    bank = BankSimulator("bank-a", "t", today=TODAY)
    bank.add_account("owner", "A1", 100)
    bank.ledger.schedule_deposit(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1), "A1", 900)
    bank.ledger.schedule_deposit(dt.datetime.now(dt.UTC) + dt.timedelta(days=1), "A1", 5_000)
    task = asyncio.create_task(_tick([bank], every_s=0.01))
    await asyncio.sleep(0.05)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert bank.ledger.holdings["A1"].balance_fen == 1_000


def test_a_partial_release_lowers_the_claim_so_deposits_no_longer_top_it_up() -> None:
    ledger = Ledger("bank", dt.date(2026, 1, 5))
    ledger.add(Holding("A1", "owner", AssetKind.DEPOSIT, 100_00))
    placed = ledger.place("k1", "case", "A1", 300_00, 1)
    assert placed.result == "partial" and placed.measure is not None
    number = placed.measure.number
    released = ledger.release("k2", number, 150_00)  # the claim falls from 300 to 150
    assert released is not None and released.measure is not None
    assert (released.measure.requested_fen, released.measure.held_fen) == (150_00, 100_00)
    ledger.deposit("A1", 500_00, dt.datetime(2026, 1, 6, tzinfo=dt.UTC))
    assert ledger.measures[number].held_fen == 150_00  # topped up to the new claim, no further
    assert [(e.seq, e.amount_fen, e.balance_fen) for e in ledger.deposits_after(0)] == [(1, 500_00, 600_00)]
    assert ledger.deposits_after(1) == []


def test_a_deduction_moves_money_and_a_claim_deducted_whole_is_released() -> None:
    ledger = Ledger("bank", dt.date(2026, 1, 5))
    ledger.add(Holding("A1", "owner", AssetKind.DEPOSIT, 100_00))
    placed = ledger.place("k1", "case", "A1", 100_00, 1)
    assert placed.measure is not None
    number = placed.measure.number
    assert ledger.deduct("k2", number, 100_00) is not None
    assert ledger.measures[number].status == "released"
    assert ledger.holdings["A1"].balance_fen == 0
    state = ledger.current(number)
    assert state is not None and state.result == "released" and state.key == "k1"
