from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from models.rules import (
    AssetKind,
    Covered,
    Debt,
    Holding,
    Payment,
    allocate_freezes,
    enforcement_fee,
    excess_releases,
    is_lapsed,
    measure_expiry,
    owed_on,
    renewal_due_on,
    renewal_expiry,
)

YUAN = 100
DUE = dt.date(2024, 1, 1)


def debt(principal_yuan: int, interest_yuan: int = 0, costs_yuan: int = 0) -> Debt:
    return Debt(principal_yuan * YUAN, interest_yuan * YUAN, costs_yuan * YUAN, DUE)


class TestOwed:
    def test_glossary_worked_example(self) -> None:
        # principal 100,000 yuan, 180 days late, nothing paid: delayed interest 3,150, fee 1,400.
        owed = owed_on(debt(100_000), [], DUE + dt.timedelta(days=180))
        assert owed.days_late == 180
        assert owed.delayed_interest == 3_150 * YUAN
        assert owed.fee == 1_400 * YUAN
        assert owed.remaining == (100_000 + 3_150 + 1_400) * YUAN

    def test_nothing_accrues_before_or_on_the_deadline(self) -> None:
        assert owed_on(debt(50_000), [], DUE).delayed_interest == 0
        assert owed_on(debt(50_000), [], DUE - dt.timedelta(days=30)).days_late == 0

    def test_judgment_interest_earns_no_delayed_interest(self) -> None:
        # 1.75/10,000 x 10 days on the principal only: 20,000 x 0.00175 = 35 yuan.
        owed = owed_on(debt(20_000, interest_yuan=5_000), [], DUE + dt.timedelta(days=10))
        assert owed.delayed_interest == 35 * YUAN
        # fee on the judgment debt 25,000: 50 + 15,000 x 1.5 % = 275
        assert owed.fee == 275 * YUAN
        assert owed.remaining == (20_000 + 5_000 + 35 + 275) * YUAN

    def test_payment_goes_to_judgment_interest_then_principal(self) -> None:
        # 100,000 principal + 10,000 interest; 30,000 paid on day 100; asked on day 200.
        # Days 1-100 on 100,000: 1,750. Payment: 10,000 to interest, 20,000 to principal -> 80,000.
        # Days 101-200 on 80,000: 1,400. Delayed interest 3,150.
        paid_on = DUE + dt.timedelta(days=100)
        owed = owed_on(debt(100_000, 10_000), [Payment(paid_on, 30_000 * YUAN)], DUE + dt.timedelta(days=200))
        assert owed.delayed_interest == 3_150 * YUAN
        fee = 50 + 100_000 * 15 // 1000  # judgment debt 110,000
        assert owed.fee == fee * YUAN
        assert owed.paid == 30_000 * YUAN
        assert owed.remaining == (110_000 + 3_150 + fee - 30_000) * YUAN

    def test_payments_after_the_day_are_ignored(self) -> None:
        on = DUE + dt.timedelta(days=10)
        later = Payment(on + dt.timedelta(days=1), 1_000 * YUAN)
        assert owed_on(debt(10_000), [later], on) == owed_on(debt(10_000), [], on)

    def test_rounding_is_half_up_once(self) -> None:
        # 1 fen principal x 1.75/10,000 x 2,000 days = 0.35 fen -> 0; x 3,000 days = 0.525 -> 1
        tiny = Debt(1, 0, 0, DUE)
        assert owed_on(tiny, [], DUE + dt.timedelta(days=2_000)).delayed_interest == 0
        assert owed_on(tiny, [], DUE + dt.timedelta(days=3_000)).delayed_interest == 1

    def test_overpayment_leaves_nothing_owed(self) -> None:
        owed = owed_on(debt(1_000), [Payment(DUE, 10_000 * YUAN)], DUE + dt.timedelta(days=5))
        assert owed.remaining == 0

    @given(st.integers(1, 10**11), st.integers(0, 10**9), st.integers(0, 3_650), st.integers(0, 3_650))
    def test_owed_never_falls_as_days_pass_without_payment(self, p: int, i: int, d1: int, d2: int) -> None:
        first, second = sorted((d1, d2))
        d = Debt(p, i, 0, DUE)
        assert (
            owed_on(d, [], DUE + dt.timedelta(days=first)).remaining
            <= owed_on(d, [], DUE + dt.timedelta(days=second)).remaining
        )

    @given(
        st.integers(1, 10**10), st.lists(st.tuples(st.integers(0, 700), st.integers(1, 10**9)), max_size=6)
    )
    def test_paying_never_increases_what_is_owed(self, p: int, pays: list[tuple[int, int]]) -> None:
        d = Debt(p, 0, 0, DUE)
        on = DUE + dt.timedelta(days=730)
        payments = [Payment(DUE + dt.timedelta(days=day), amount) for day, amount in pays]
        unpaid = owed_on(d, [], on)
        with_payments = owed_on(d, payments, on)
        assert with_payments.remaining <= unpaid.remaining
        assert with_payments.delayed_interest <= unpaid.delayed_interest


class TestFee:
    @pytest.mark.parametrize(
        ("debt_yuan", "fee_yuan"),
        [
            (0, 50),
            (10_000, 50),
            (10_100, 51.5),
            (100_000, 1_400),
            (500_000, 7_400),
            (5_000_000, 52_400),
            (10_000_000, 77_400),
            (20_000_000, 87_400),
        ],
    )
    def test_statutory_bands(self, debt_yuan: int, fee_yuan: float) -> None:
        assert enforcement_fee(debt_yuan * YUAN) == round(fee_yuan * YUAN)

    @given(st.integers(0, 10**13), st.integers(0, 10**13))
    def test_fee_grows_with_the_debt(self, a: int, b: int) -> None:
        low, high = sorted((a, b))
        assert enforcement_fee(low) <= enforcement_fee(high)


holdings = st.lists(st.integers(0, 10**9), max_size=8).map(
    lambda balances: [Holding(key=i, available=b) for i, b in enumerate(balances)]
)


class TestAllocation:
    def test_allocates_bank_by_bank_up_to_what_is_owed(self) -> None:
        result = allocate_freezes(150, 0, [Holding(1, 100), Holding(2, 0), Holding(3, 100), Holding(4, 100)])
        assert [(a.key, a.amount) for a in result] == [(1, 100), (3, 50)]

    def test_existing_measures_count_against_the_cap(self) -> None:
        assert allocate_freezes(150, 150, [Holding(1, 100)]) == []
        assert [a.amount for a in allocate_freezes(150, 120, [Holding(1, 100)])] == [30]

    @given(st.integers(0, 10**10), st.integers(0, 10**10), holdings)
    def test_never_more_than_owed_and_as_much_as_possible(
        self, owed: int, covered: int, hs: list[Holding]
    ) -> None:
        result = allocate_freezes(owed, covered, hs)
        total = sum(a.amount for a in result)
        assert covered + total <= max(owed, covered)
        assert total == min(max(owed - covered, 0), sum(h.available for h in hs))
        available = {h.key: h.available for h in hs}
        assert all(0 < a.amount <= available[a.key] for a in result)
        assert len({a.key for a in result}) == len(result)


class TestExcess:
    def test_cuts_the_most_recent_first(self) -> None:
        measures = [
            Covered(1, 100, dt.date(2024, 1, 1)),
            Covered(2, 100, dt.date(2024, 1, 5)),
            Covered(3, 50, dt.date(2024, 1, 3)),
        ]
        assert [(a.key, a.amount) for a in excess_releases(120, measures)] == [(2, 100), (3, 30)]

    @given(
        st.integers(0, 10**9),
        st.lists(st.tuples(st.integers(0, 10**8), st.integers(0, 400)), max_size=8),
    )
    def test_after_release_nothing_exceeds_what_is_owed(self, owed: int, raw: list[tuple[int, int]]) -> None:
        measures = [Covered(i, amount, DUE + dt.timedelta(days=d)) for i, (amount, d) in enumerate(raw)]
        releases = excess_releases(owed, measures)
        held = sum(m.amount for m in measures)
        released = sum(r.amount for r in releases)
        assert held - released <= owed
        assert released == max(held - owed, 0), "release only the excess"
        amounts = {m.key: m.amount for m in measures}
        assert all(0 < r.amount <= amounts[r.key] for r in releases)


class TestTerms:
    @pytest.mark.parametrize(
        ("kind", "start", "expiry"),
        [
            (AssetKind.DEPOSIT, dt.date(2024, 1, 10), dt.date(2025, 1, 9)),
            (AssetKind.VEHICLE, dt.date(2024, 1, 10), dt.date(2026, 1, 9)),
            (AssetKind.REAL_ESTATE, dt.date(2024, 1, 10), dt.date(2027, 1, 9)),
            (AssetKind.DEPOSIT, dt.date(2024, 2, 29), dt.date(2025, 2, 27)),
            (AssetKind.DEPOSIT, dt.date(2024, 3, 1), dt.date(2025, 2, 28)),
        ],
    )
    def test_terms(self, kind: AssetKind, start: dt.date, expiry: dt.date) -> None:
        assert measure_expiry(kind, start) == expiry

    def test_a_term_beyond_the_limit_is_refused(self) -> None:
        with pytest.raises(ValueError, match="1 to 1 years"):
            measure_expiry(AssetKind.DEPOSIT, DUE, years=2)
        assert measure_expiry(AssetKind.REAL_ESTATE, DUE, years=1) == dt.date(2024, 12, 31)

    def test_renewal_continues_the_day_after(self) -> None:
        assert renewal_expiry(AssetKind.DEPOSIT, dt.date(2025, 1, 9)) == dt.date(2026, 1, 9)

    def test_renewal_lead_below_seven_days_is_refused(self) -> None:
        with pytest.raises(ValueError, match="at least 7"):
            renewal_due_on(dt.date(2025, 1, 9), 6)

    @given(
        st.sampled_from(list(AssetKind)),
        st.dates(dt.date(1990, 1, 1), dt.date(2090, 1, 1)),
        st.integers(7, 365),
    )
    def test_renewal_always_falls_before_expiry(self, kind: AssetKind, start: dt.date, lead: int) -> None:
        expiry = measure_expiry(kind, start)
        due = renewal_due_on(expiry, lead)
        assume(due >= start)
        assert due < expiry
        assert not is_lapsed(expiry, due)
        assert not is_lapsed(expiry, expiry) and is_lapsed(expiry, expiry + dt.timedelta(days=1))
        assert (expiry - start).days < 366 * {AssetKind.DEPOSIT: 1, AssetKind.VEHICLE: 2}.get(kind, 3)
