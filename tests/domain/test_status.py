"""The statuses and the measure's transition table (models.status)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from models.status import ENDED, KEPT, LIVE, TRANSITIONS, CaseStatus, MeasureStatus, may_move


def test_every_measure_status_has_its_row_and_the_ends_have_no_exit() -> None:
    assert set(TRANSITIONS) == set(MeasureStatus)
    for end in (MeasureStatus.RELEASED, MeasureStatus.EXPIRED, MeasureStatus.FAILED):
        assert TRANSITIONS[end] == frozenset() and end not in LIVE


def test_nothing_returns_to_requested_and_a_live_measure_can_always_be_released() -> None:
    assert all(MeasureStatus.REQUESTED not in after for after in TRANSITIONS.values())
    assert all(MeasureStatus.RELEASED in TRANSITIONS[status] for status in LIVE)


def test_a_case_that_ended_keeps_nothing_and_statuses_compare_as_stored() -> None:
    assert not set(ENDED) & set(KEPT) and CaseStatus.RESUMED not in ENDED + KEPT
    assert MeasureStatus.EFFECTIVE == "effective" and f"{CaseStatus.PAID}" == "paid"


@given(st.lists(st.sampled_from(list(MeasureStatus)), max_size=12))
def test_any_walk_the_table_allows_reaches_an_end_at_most_once(walk: list[MeasureStatus]) -> None:
    """Follow only allowed moves from `requested`: once at an end, every later move is refused."""
    state, ended = MeasureStatus.REQUESTED, False
    for step in walk:
        if not may_move(state, step):
            continue
        if ended:
            assert step == state, "an ended measure does not move"
        state = step
        ended = ended or not TRANSITIONS[state]
    assert may_move(state, state)
