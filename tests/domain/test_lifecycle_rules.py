"""Release order, deduction proposals, triage and node deadlines: the rules, with no database."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.rules import (
    Allocation,
    Covered,
    ReleaseOrder,
    excess_releases,
    propose_deduction,
    split_approved,
)
from models.supervision import (
    CHINA,
    Level,
    Node,
    NodeRules,
    Track,
    TriageRules,
    control_deadline,
    query_deadline,
    renewal_deadline,
    start_of,
    supervision_deadline,
    triage,
)

D = dt.date(2025, 3, 1)
MEASURES = [Covered(1, 500, D), Covered(2, 300, D + dt.timedelta(days=1)), Covered(3, 900, D)]


class TestReleaseOrder:
    @pytest.mark.parametrize(
        ("order", "expected"),
        [
            (ReleaseOrder.NEWEST, [Allocation(2, 300), Allocation(3, 100)]),
            (ReleaseOrder.OLDEST, [Allocation(1, 400)]),
            (ReleaseOrder.LARGEST, [Allocation(3, 400)]),
            (ReleaseOrder.SMALLEST, [Allocation(2, 300), Allocation(1, 100)]),
        ],
    )
    def test_each_order_cuts_exactly_the_excess(
        self, order: ReleaseOrder, expected: list[Allocation]
    ) -> None:
        assert excess_releases(1300, MEASURES, order) == expected

    @given(st.integers(0, 3000), st.sampled_from(list(ReleaseOrder)))
    def test_any_order_leaves_the_cap_true(self, owed: int, order: ReleaseOrder) -> None:
        cuts = {a.key: a.amount for a in excess_releases(owed, MEASURES, order)}
        left = sum(m.amount - cuts.get(m.key, 0) for m in MEASURES)
        assert left == min(owed, 1700)
        assert all(0 < cuts[m.key] <= m.amount for m in MEASURES if m.key in cuts)


class TestDeduction:
    def test_oldest_first_up_to_what_is_owed(self) -> None:
        assert propose_deduction(1000, MEASURES) == [Allocation(1, 500), Allocation(3, 500)]

    def test_nothing_owed_nothing_moves(self) -> None:
        assert propose_deduction(0, MEASURES) == []

    def test_a_judge_may_approve_less_never_more(self) -> None:
        proposal = propose_deduction(1000, MEASURES)
        assert split_approved(600, proposal) == [Allocation(1, 500), Allocation(3, 100)]
        with pytest.raises(ValueError, match="may not exceed the 1000 fen"):
            split_approved(1001, proposal)
        with pytest.raises(ValueError, match="more than 0"):
            split_approved(0, proposal)

    @given(st.integers(0, 5000), st.integers(1, 5000))
    def test_approved_split_never_exceeds_what_a_freeze_holds(self, owed: int, approved: int) -> None:
        proposal = propose_deduction(owed, MEASURES)
        total = sum(a.amount for a in proposal)
        assert total == min(owed, 1700)
        if 0 < approved <= total:
            held = {m.key: m.amount for m in MEASURES}
            split = split_approved(approved, proposal)
            assert sum(a.amount for a in split) == approved
            assert all(a.amount <= held[a.key] for a in split)


class TestTriage:
    rules = TriageRules(simple_below_fen=100_000_00)

    def test_found_covers_owed_is_fast(self) -> None:
        assert triage(500_000_00, 500_000_00, self.rules) is Track.FAST

    def test_small_debts_are_simple_large_are_normal(self) -> None:
        assert triage(99_999_99, 0, self.rules) is Track.SIMPLE
        assert triage(100_000_00, 1, self.rules) is Track.NORMAL

    def test_negative_amounts_are_refused(self) -> None:
        with pytest.raises(ValueError, match="non-negative"):
            triage(-1, 0, self.rules)


class TestNodeDeadlines:
    rules = NodeRules(renewal_lead_days=30)

    def test_query_counts_from_filing_or_from_entry_when_later(self) -> None:
        on_time = query_deadline(D, start_of(D), self.rules)
        assert on_time.due_at == start_of(D) + dt.timedelta(hours=24)
        entered = dt.datetime(2025, 3, 5, 9, tzinfo=CHINA)
        late = query_deadline(D, entered, self.rules)
        assert late.due_at == entered + dt.timedelta(hours=24)
        assert late.level(entered) is None
        assert late.level(entered + dt.timedelta(hours=21)) is Level.WARNING
        assert late.level(entered + dt.timedelta(hours=24, seconds=1)) is Level.OVERDUE

    def test_control_within_a_day_of_the_hit(self) -> None:
        hit = dt.datetime(2025, 3, 1, 10, tzinfo=dt.UTC)
        deadline = control_deadline(7, hit, self.rules)
        assert (deadline.node, deadline.subject) == (Node.CONTROL, "asset:7")
        assert deadline.level(hit + dt.timedelta(hours=25)) is Level.OVERDUE

    def test_renewal_warns_from_the_lead_and_is_overdue_once_lapsed(self) -> None:
        expires = dt.date(2026, 2, 28)
        deadline = renewal_deadline(3, expires, self.rules)
        assert deadline.level(start_of(dt.date(2026, 1, 28))) is None
        assert deadline.level(start_of(dt.date(2026, 1, 29))) is Level.WARNING
        assert deadline.level(start_of(expires) + dt.timedelta(hours=23)) is Level.WARNING
        assert deadline.level(start_of(dt.date(2026, 3, 1)) + dt.timedelta(seconds=1)) is Level.OVERDUE

    def test_supervision_days_depend_on_the_track(self) -> None:
        last = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)
        fast = supervision_deadline(last, Track.FAST, self.rules)
        normal = supervision_deadline(last, Track.NORMAL, self.rules)
        assert fast.due_at == last + dt.timedelta(days=10)
        assert normal.due_at == last + dt.timedelta(days=30)
        assert normal.level(last + dt.timedelta(days=26)) is Level.WARNING
