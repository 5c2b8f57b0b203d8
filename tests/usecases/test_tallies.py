"""A run's counts, added page by page: what a province's sweep keeps instead of its batches and plans."""

from __future__ import annotations

from clerk import control, querying


def batch(
    registry: str, queried: int = 0, hits: int = 0, failed: int = 0, error: str | None = None
) -> querying.BatchResult:
    return querying.BatchResult(
        registry,
        querying.Recorded(queried=queried, hits=hits),
        failed=failed,
        error=error,
        skipped=error == "open",
    )


def test_a_tally_adds_batches_up_per_registry() -> None:
    tally = querying.Tally()
    tally.add([batch("bank-a", queried=200, hits=3), batch("bank-a", failed=200, error="timeout")])
    tally.add([batch("dmv", queried=50, hits=1)])
    assert tally.registries["bank-a"] == {
        "queried": 400,
        "hits": 3,
        "new assets": 0,
        "changed": 0,
        "pending": 0,
        "failed": 200,
        "skipped batches": 0,
    }
    assert tally.total("hits") == 4 and tally.total("failed") == 200 and tally.batches == 3
    assert tally.unanswered() is None, "some lookups were answered"


def test_a_tally_names_each_registrys_reason_when_nothing_was_answered() -> None:
    tally = querying.Tally.of(
        [batch("bank-b", failed=5, error="open"), batch("bank-a", failed=5, error="timeout")]
    )
    tally.add([batch("bank-a", failed=5, error="timeout")])
    assert tally.unanswered() == "bank-a: timeout; bank-b: open"
    assert tally.registries["bank-b"]["skipped batches"] == 1
    assert querying.Tally().unanswered() is None, "no lookups: nothing unanswered"


def plan(number: str, remaining: int, covered: int, freeze: int) -> control.Plan:
    return control.Plan(number, remaining_fen=remaining, covered_before_fen=covered, freeze_fen=freeze)


def test_a_control_result_names_the_first_short_cases_and_counts_the_rest() -> None:
    total = control.Counts()
    for page in range(3):
        part = control.Counts()
        for i in range(150):
            part.note(plan(f"case {page}-{i}", remaining=1000, covered=100, freeze=i % 2 * 900))
        total.add(part)
    # Every even plan leaves 900 fen uncovered; odd plans cover the rest exactly.
    assert total.short_cases == 3 * 75
    assert len(total.short) == control.SHORT_NAMED
    assert total.short[0] == ("case 0-0", 900) and total.short[75] == ("case 1-0", 900)
    assert total.freeze_requested_fen == 3 * 75 * 900


def test_a_plan_is_short_by_what_neither_old_nor_new_freezes_cover() -> None:
    assert plan("x", remaining=1000, covered=300, freeze=200).short_fen == 500
    assert plan("x", remaining=1000, covered=800, freeze=200).short_fen == 0
    assert plan("x", remaining=1000, covered=1200, freeze=0).short_fen == 0
