"""Case money's rules (models.money): the journal balances, the split follows the law's order, and the
reconciliation names every difference."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.money import (
    Account,
    Difference,
    Leg,
    Split,
    Unbalanced,
    arrived,
    assigned,
    balances,
    differences,
    entry,
    reversal,
    split,
    split_entry,
    to_return,
)


def test_an_entry_that_does_not_sum_to_zero_is_refused() -> None:
    with pytest.raises(Unbalanced, match="sum to 1 fen"):
        entry(Leg(Account.BANK, 1, 101), Leg(Account.RECEIVED, 1, -100))
    with pytest.raises(Unbalanced, match="at least two"):
        entry(Leg(Account.BANK, 1, 0))
    with pytest.raises(Unbalanced, match="0 fen moves nothing"):
        entry(Leg(Account.BANK, 1, 0), Leg(Account.RECEIVED, 1, 0))
    with pytest.raises(Unbalanced, match="one leg in an entry"):  # the audit event holds legs by account
        entry(Leg(Account.BANK, 1, 100), Leg(Account.RECEIVED, 1, -60), Leg(Account.RECEIVED, 1, -40))


def test_accounts_belong_to_a_case_or_to_the_bureau() -> None:
    with pytest.raises(Unbalanced, match="needs the case"):
        Leg(Account.APPLICANT, None, 5)
    with pytest.raises(Unbalanced, match="bureau's account"):
        Leg(Account.UNIDENTIFIED, 3, 5)
    assert Leg(Account.BANK, None, 5).case_id is None  # the master account


def test_the_fee_and_costs_come_first_then_the_debt_then_the_debtors_surplus() -> None:
    assert split(100_00, fees_due=30_00, applicant_due=1_000_00) == Split(30_00, 70_00, 0)
    assert split(100_00, fees_due=0, applicant_due=60_00) == Split(0, 60_00, 40_00)
    assert split(100_00, fees_due=150_00, applicant_due=60_00) == Split(100_00, 0, 0)
    assert split(1, fees_due=0, applicant_due=0) == Split(0, 0, 1)
    with pytest.raises(ValueError, match="more than 0"):
        split(0, 1, 1)


def test_a_split_is_journaled_from_received_to_what_it_is_for() -> None:
    legs = split_entry(7, Split(30, 70, 0))
    assert balances(legs) == {
        (Account.RECEIVED, 7): 100,
        (Account.FEES, 7): -30,
        (Account.APPLICANT, 7): -70,
    }


def test_unplaced_money_waits_on_the_master_account_as_unidentified_until_a_person_places_it() -> None:
    books = [*arrived(None, 500, None), *assigned(300, 4), *to_return(200)]
    assert balances(books) == {
        (Account.BANK, None): 500,
        (Account.RECEIVED, 4): -300,
        (Account.TO_RETURN, None): -200,
    }


def test_a_reversal_undoes_an_entry() -> None:
    legs = arrived(3, 900, 3)
    assert balances([*legs, *reversal(legs)]) == {}


def test_reconciliation_names_each_account_that_differs_and_only_those() -> None:
    bank = {"A": 100, "B": 50, "C": 0, "D": 7}
    journal = {"A": 100, "B": 49, "E": 3}
    assert differences(bank, journal) == [
        Difference("B", 50, 49),
        Difference("D", 7, None),
        Difference("E", None, 3),
    ]
    assert [d.off_by for d in differences(bank, journal)] == [1, 7, -3]


movements = st.lists(
    st.tuples(
        st.sampled_from(["case", "unplaced", "assign", "return", "reverse"]),
        st.integers(1, 10**12),
        st.integers(1, 5),
        st.integers(0, 10**9),
        st.integers(0, 10**12),
    ),
    max_size=60,
)


@given(movements)
def test_the_journal_balances_whatever_moves(steps: list[tuple[str, int, int, int, int]]) -> None:
    """Every entry sums to zero, so the whole journal does; the bank's side equals what the money is for;
    a split never makes or loses a fen and never pays more than is due."""
    journal: list[tuple[Leg, ...]] = []
    for kind, fen, case_id, fees_due, applicant_due in steps:
        if kind == "case":
            journal.append(arrived(case_id, fen, case_id))
            parts = split(fen, fees_due, applicant_due)
            assert parts.total == fen and min(parts.fees, parts.applicant, parts.refundable) >= 0
            assert parts.fees <= fees_due and parts.applicant <= applicant_due
            assert parts.refundable == 0 or parts.fees + parts.applicant == fees_due + applicant_due
            journal.append(split_entry(case_id, parts))
        elif kind == "unplaced":
            journal.append(arrived(None, fen, None))
        elif kind == "assign":
            journal.append(assigned(fen, case_id))
        elif kind == "return":
            journal.append(to_return(fen))
        elif journal:
            journal.append(reversal(journal[-1]))
    for legs in journal:
        assert sum(leg.fen for leg in legs) == 0
    totals = balances(leg for legs in journal for leg in legs)
    assert sum(totals.values()) == 0
    bank = sum(fen for (account, _), fen in totals.items() if account is Account.BANK)
    assert bank == -sum(fen for (account, _), fen in totals.items() if account is not Account.BANK)
