"""The 24-hour rule: a registry answers an online query or control request within 24 hours. How each
registry kept it, as a score (no Prefect, HTTP or SQL here: the caller counts, this judges)."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass

#: The rule: every registry answers within this.
ANSWER_WITHIN = dt.timedelta(hours=24)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank percentile (q from 0 to 100) of `values`; None for none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(math.ceil(q / 100 * len(ordered)), 1)
    return ordered[rank - 1]


#: The scoreboard's columns, as `Score.as_row` names them.
COLUMNS = ("registry", "requests", "answered", "p50", "p95", "late >24 h", "open >24 h", "refused", "invalid")


@dataclass(frozen=True, slots=True)
class Score:
    registry: str
    requests: int  # lookups and control requests sent in the window
    answers: int  # lookups answered
    p50_s: float | None  # answer time of those lookups, seconds
    p95_s: float | None
    late: int  # answered, but later than ANSWER_WITHIN
    overdue: int  # still unanswered, sent longer than ANSWER_WITHIN ago (whenever sent)
    refusals: int  # lookups failed and control requests refused
    invalid: int  # control answers found invalid (flagged for a person)

    @property
    def kept_the_rule(self) -> bool:
        return not self.late and not self.overdue

    def as_row(self) -> dict[str, object]:
        """The score as a table row for people (answer times in words)."""
        return {
            "registry": self.registry,
            "requests": self.requests,
            "answered": self.answers,
            "p50": duration(self.p50_s),
            "p95": duration(self.p95_s),
            "late >24 h": self.late,
            "open >24 h": self.overdue,
            "refused": self.refusals,
            "invalid": self.invalid,
        }


def duration(seconds: float | None) -> str:
    """3.2 s, 14 min, 26.0 h; empty for none."""
    if seconds is None:
        return ""
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def score(
    registry: str,
    requests: int,
    answer_times_s: Sequence[float],
    overdue: int,
    refusals: int,
    invalid: int,
) -> Score:
    limit = ANSWER_WITHIN.total_seconds()
    return Score(
        registry,
        requests,
        len(answer_times_s),
        percentile(answer_times_s, 50),
        percentile(answer_times_s, 95),
        sum(1 for s in answer_times_s if s > limit),
        overdue,
        refusals,
        invalid,
    )
