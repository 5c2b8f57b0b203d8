"""What may never be frozen (models.exemptions): the living allowance across a person's deposits, and the
local standard that sets it."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.exemptions import (
    Deposit,
    Exemptions,
    LivingStandard,
    deductible,
    living_allowance,
    room_for,
    standard_for,
    within_allowance,
)
from models.rules import Holding, allocate_freezes

STANDARDS = [
    LivingStandard("豫", 650_00, dt.date(2024, 1, 1)),
    LivingStandard("豫", 700_00, dt.date(2025, 7, 1)),
    LivingStandard("豫01", 820_00, dt.date(2025, 1, 1)),
    LivingStandard("京", 1_450_00, dt.date(2024, 7, 1)),
]


def test_the_most_specific_region_and_the_figure_in_force_on_the_day_apply() -> None:
    assert standard_for(STANDARDS, "豫1302", dt.date(2025, 6, 30)) == 650_00
    assert standard_for(STANDARDS, "豫1302", dt.date(2025, 7, 1)) == 700_00, "a new figure from its day"
    assert standard_for(STANDARDS, "豫0105", dt.date(2025, 3, 1)) == 820_00, "the city's own figure wins"
    assert standard_for(STANDARDS, "京0105", dt.date(2024, 1, 1)) is None, "not yet in force"
    assert standard_for(STANDARDS, "粤0304", dt.date(2026, 1, 1)) is None, "no figure for the region"


def test_the_allowance_is_the_standard_times_months_for_the_debtor_and_each_dependant() -> None:
    assert living_allowance(700_00, 3, None) == 2_100_00
    assert living_allowance(700_00, 3, 2) == 6_300_00
    assert living_allowance(None, 3, 2) == 0, "no standard: nothing left free by this rule"
    with pytest.raises(ValueError, match="monthly_fen"):
        LivingStandard("豫", 0, dt.date(2024, 1, 1))


def test_the_allowance_is_kept_across_all_deposits_not_per_account() -> None:
    holdings = [Holding(1, 5_000_00), Holding(2, 1_000_00), Holding(3, 300_00)]
    kept = within_allowance(holdings, 2_100_00)
    assert [h.available for h in kept] == [4_200_00, 0, 0]
    assert sum(h.available for h in holdings) - sum(h.available for h in kept) == 2_100_00
    assert within_allowance(holdings, 10_000_00) == [Holding(1, 0), Holding(2, 0), Holding(3, 0)]


amounts = st.integers(min_value=0, max_value=10**9)


@given(
    st.lists(amounts, max_size=6),
    amounts,
    amounts,
    st.integers(min_value=0, max_value=10**8),
)
def test_frozen_never_exceeds_what_is_owed_nor_what_the_allowance_leaves(
    balances: list[int], owed: int, covered: int, allowance: int
) -> None:
    holdings = [Holding(i, b) for i, b in enumerate(balances)]
    covered = min(covered, owed)
    frozen = sum(a.amount for a in allocate_freezes(owed, covered, within_allowance(holdings, allowance)))
    assert frozen <= owed - covered
    assert frozen <= max(sum(balances) - allowance, 0)
    assert frozen == min(owed - covered, max(sum(balances) - allowance, 0)), "as much as the law allows"


def test_a_judges_override_turns_off_the_rule_it_names_for_that_case_only() -> None:
    rules = Exemptions(tuple(STANDARDS), 3, frozenset({"migrant_wage"}))
    allowance_off = rules.for_case(allowance_overridden=True, protected_overridden=False)
    assert allowance_off.allowance("豫1302", dt.date(2026, 1, 1), 2) == 0
    assert allowance_off.protected == {"migrant_wage"}
    protected_off = rules.for_case(allowance_overridden=False, protected_overridden=True)
    assert protected_off.protected == frozenset()
    assert protected_off.allowance("豫1302", dt.date(2026, 1, 1), 2) == 3 * 700_00 * 3
    assert rules.allowance("豫1302", dt.date(2026, 1, 1), 2) == 3 * 700_00 * 3, "the settings are unchanged"


def test_a_deduction_leaves_the_allowance_even_when_it_grew_since_the_freeze() -> None:
    """Frozen 7,000 of a 10,000 balance when the allowance was 3,000; it is 4,000 now: 6,000 may move,
    the oldest freeze first; held for another case counts against the room too."""
    frozen = [Holding(1, 5_000_00), Holding(2, 2_000_00)]
    assert deductible(frozen, 10_000_00, 3_000_00) == frozen
    assert deductible(frozen, 10_000_00, 4_000_00) == [Holding(1, 5_000_00), Holding(2, 1_000_00)]
    assert deductible(frozen, 10_000_00, 4_000_00, held_elsewhere=5_500_00) == [
        Holding(1, 500_00),
        Holding(2, 0),
    ]
    assert deductible(frozen, 1_000_00, 4_000_00) == [Holding(1, 0), Holding(2, 0)]


@given(
    st.lists(st.integers(0, 10**8), max_size=6),
    st.integers(0, 10**9),
    st.integers(0, 10**8),
    st.integers(0, 10**8),
)
def test_what_moves_never_eats_into_the_allowance(
    frozen: list[int], balance: int, allowance: int, elsewhere: int
) -> None:
    holdings = [Holding(i, f) for i, f in enumerate(frozen)]
    moved = deductible(holdings, balance, allowance, elsewhere)
    assert all(0 <= m.available <= f.available for m, f in zip(moved, holdings, strict=True))
    total = sum(m.available for m in moved)
    assert total <= max(balance - allowance - elsewhere, 0)
    assert total == min(sum(frozen), max(balance - allowance - elsewhere, 0))


_PURPOSES = st.sampled_from([None, "salary", "social_security"])
_DEPOSITS = st.lists(
    st.tuples(
        st.integers(0, 2),  # debtor
        st.integers(0, 50_000_00),  # free: the balance less other authorities' measures
        st.integers(0, 20_000_00),  # held: our holds the caller counts as gone
        _PURPOSES,
    ),
    max_size=8,
)


@given(
    deposits=_DEPOSITS,
    dependants=st.dictionaries(st.integers(0, 2), st.none() | st.integers(0, 4), max_size=3),
    months=st.integers(0, 6),
    overridden=st.tuples(st.booleans(), st.booleans()),
    moving=st.lists(st.integers(0, 60_000_00), max_size=8),
)
def test_the_freeze_the_deduction_and_the_case_sheet_agree_on_what_the_law_leaves(
    deposits: list[tuple[int, int, int, str | None]],
    dependants: dict[int, int | None],
    months: int,
    overridden: tuple[bool, bool],
    moving: list[int],
) -> None:
    """Planning, the deduction and the case sheet each take `room_for`: what the freeze leaves free on a
    person's deposits is what the sheet says is kept, the deduction never moves more than the freeze could
    have held, and a protected deposit is in none of them, unless the judge overrode the rule for the case."""
    rules = Exemptions(STANDARDS, months, frozenset({"social_security"}))
    found = [
        Deposit(i, debtor, free, held, purpose) for i, (debtor, free, held, purpose) in enumerate(deposits)
    ]
    allowance_off, protected_off = overridden
    case = SimpleNamespace(
        court_code="豫0185", override_allowance=allowance_off, override_protected=protected_off
    )
    room = room_for(rules, case, dt.date(2026, 1, 5), found, dependants)
    assert room.protected == (
        frozenset() if protected_off else {d.key for d in found if d.purpose == "social_security"}
    )
    for debtor in {d.debtor for d in found}:
        mine = [d for d in found if d.debtor == debtor and d.key not in room.protected]
        total = sum(max(d.free - d.held, 0) for d in mine)
        # The sheet's words: the allowance, and what of it the person's deposits hold.
        allowance = room.allowance.get(debtor, 0)
        expected = 0 if allowance_off or months == 0 or debtor not in dependants else allowance
        assert allowance == expected
        assert room.kept.get(debtor, 0) == min(allowance, total)
        # The freeze: what it may place on the deposits leaves exactly what the sheet says is kept.
        group = [Holding(d.key, room.room[d.key]) for d in mine]
        frozen = sum(h.available for h in room.take(debtor, group))
        assert frozen == total - room.kept.get(debtor, 0) == room.holdable.get(debtor, 0)
        # The deduction: this case's freezes on them move at most what the freeze could have held.
        held = [Holding(d.key, amount) for d, amount in zip(mine, moving, strict=False)]
        moved = room.take(debtor, held)
        assert all(0 <= m.available <= h.available for m, h in zip(moved, held, strict=True))
        if debtor in room.allowance:
            assert sum(m.available for m in moved) == min(
                sum(h.available for h in held), room.holdable.get(debtor, 0)
            )
