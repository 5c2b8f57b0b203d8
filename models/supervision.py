"""Triage (繁简分流) and node deadlines (节点期限), as pure functions over plain values.

Triage routes a case after its first full query: fast (速执) when what was found covers what is
owed, simple (简执) under a threshold, normal (普执) otherwise; special (特执) is a judge's call. Node
deadlines: query within 24 hours of filing, control within 24 hours of a hit, renewal before expiry, and
supervision of cases with no progress. Each node has a moment it is due and one from which it warns; the
thresholds are settings.
No Prefect, HTTP or SQL here.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum

from models.rules import renewal_due_on

#: The bureau's time zone: filing dates and measure expiries are Beijing calendar days.
CHINA = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")


def bureau_today(now: dt.datetime | None = None) -> dt.date:
    """The calendar day in Beijing: what is owed, filing dates and expiries are counted in it, whatever the
    machine's own time zone."""
    return (now or dt.datetime.now(dt.UTC)).astimezone(CHINA).date()


class Track(StrEnum):
    FAST = "fast"  # 速执: what was found covers what is owed
    SIMPLE = "simple"  # 简执: a small amount owed
    NORMAL = "normal"  # 普执
    SPECIAL = "special"  # 特执: flagged by the judge


class Node(StrEnum):
    QUERY = "query"
    CONTROL = "control"
    RENEWAL = "renewal"
    SUPERVISION = "supervision"


class Level(StrEnum):
    WARNING = "warning"  # before the deadline
    OVERDUE = "overdue"  # after it: an alert


@dataclass(frozen=True, slots=True)
class TriageRules:
    simple_below_fen: int = 100_000_00


def triage(remaining_fen: int, found_fen: int, rules: TriageRules) -> Track:
    """The track of a case after its first full query. `found_fen` is what the query found that can pay
    the debt: deposits free to freeze plus what is already frozen for the case."""
    if remaining_fen < 0 or found_fen < 0:
        raise ValueError("amounts must be non-negative")
    if found_fen >= remaining_fen:
        return Track.FAST
    if remaining_fen < rules.simple_below_fen:
        return Track.SIMPLE
    return Track.NORMAL


@dataclass(frozen=True, slots=True)
class NodeRules:
    query_within: dt.timedelta = dt.timedelta(hours=24)
    control_within: dt.timedelta = dt.timedelta(hours=24)
    warn_before: dt.timedelta = dt.timedelta(hours=4)  # query and control nodes
    renewal_lead_days: int = 30
    supervision_days: dict[Track | None, int] = field(
        default_factory=lambda: {
            Track.FAST: 10,
            Track.SIMPLE: 20,
            Track.NORMAL: 30,
            Track.SPECIAL: 60,
            None: 30,
        }
    )
    supervision_warn_days: int = 5


@dataclass(frozen=True, slots=True)
class Deadline:
    node: Node
    subject: str  # what it is about: "filing", "asset:12", "measure:7", "case"
    warn_from: dt.datetime
    due_at: dt.datetime

    def level(self, now: dt.datetime) -> Level | None:
        if now > self.due_at:
            return Level.OVERDUE
        if now >= self.warn_from:
            return Level.WARNING
        return None


def start_of(day: dt.date) -> dt.datetime:
    """Midnight at the start of a Beijing calendar day."""
    return dt.datetime.combine(day, dt.time(), CHINA)


def query_deadline(filed_on: dt.date, entered_at: dt.datetime, rules: NodeRules) -> Deadline:
    """Query within 24 hours of filing; a case entered into the case book later than filed counts from its
    entry (nobody can query a case the clerk has not been given)."""
    start = max(start_of(filed_on), entered_at)
    due = start + rules.query_within
    return Deadline(Node.QUERY, "filing", due - rules.warn_before, due)


def control_deadline(asset_id: int, hit_at: dt.datetime, rules: NodeRules) -> Deadline:
    due = hit_at + rules.control_within
    return Deadline(Node.CONTROL, f"asset:{asset_id}", due - rules.warn_before, due)


def renewal_deadline(measure_id: int, expires_on: dt.date, rules: NodeRules) -> Deadline:
    """Warn from the renewal day (the lead before expiry); overdue once the measure has lapsed."""
    warn = start_of(renewal_due_on(expires_on, rules.renewal_lead_days))
    return Deadline(Node.RENEWAL, f"measure:{measure_id}", warn, start_of(expires_on + dt.timedelta(days=1)))


def supervision_deadline(last_progress: dt.datetime, track: Track | None, rules: NodeRules) -> Deadline:
    """A case with no progress (no query, hit, measure, payment or decision) for the track's days."""
    due = last_progress + dt.timedelta(days=rules.supervision_days[track])
    return Deadline(Node.SUPERVISION, "case", due - dt.timedelta(days=rules.supervision_warn_days), due)
