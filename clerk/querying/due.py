"""Use cases of querying: which debtors are due, what to ask, and recording what registries answered.

Each hit is recorded once: an asset is one row per (registry, identifier); a later reply updates its
balance and other authorities' measures and says what changed, in the audit trail.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, exists, func, or_, select, true
from sqlalchemy.orm import Session, aliased

from models.status import UNANSWERED, CaseStatus, LookupStatus
from models.tables import Case, CaseDebtor, Debtor, Query
from models.values import InvalidValue


@dataclass(frozen=True, slots=True)
class Schedule:
    """When debtors are due for a query (settings)."""

    requery_days: int = 30  # active cases
    terminated_requery_days: int = 182  # terminated for now: every 6 months …
    terminated_years: int = 5  # … for 5 years after termination
    answer_within_h: int = 24  # a registry must answer within 24 hours: a lookup still "later" is asked again


MAX_SHARDS = 1024


@dataclass(frozen=True, slots=True)
class Shard:
    """One of `count` disjoint parts of the debtors, by a stable partition of the debtors by their first
    case (`_shard_key`: a debtor belongs to the same shard in every sweep, and a case's debtors to one
    shard): the sweep of a province is split into shards that run on different workers, each debtor in
    exactly one."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_SHARDS:
            raise InvalidValue("shards", f"must be between 1 and {MAX_SHARDS}, not {self.count}")
        if not 0 <= self.index < self.count:
            raise InvalidValue("shard", f"must be between 0 and {self.count - 1}, not {self.index}")

    def __str__(self) -> str:
        return f"{self.index + 1} of {self.count}"


def due_debtor_ids(
    session: Session, now: dt.datetime, schedule: Schedule, page_size: int = 1000, shard: Shard = Shard()
) -> Iterator[list[int]]:
    """Debtor ids due for a query (see `due_page`), in pages read one after another in `session`."""
    last = 0
    while page := due_page(session, now, schedule, last, page_size, shard):
        yield page
        last = page[-1]


def due_page(
    session: Session, now: dt.datetime, schedule: Schedule, after: int, size: int, shard: Shard = Shard()
) -> list[int]:
    """The next `size` debtor ids above `after` that are due for a query (keyset on id: each page is one
    short read, so a sweep can read its pages as it goes and hold none of them):
    debtors of active cases never queried, last queried `requery_days` ago, or whose last lookup at some
    registry failed or was never answered; and debtors of cases terminated for now within
    `terminated_years`, last queried `terminated_requery_days` ago."""
    return list(
        session.scalars(
            select(Debtor.id)
            .where(Debtor.id > after, _due(now, schedule, shard))
            .order_by(Debtor.id)
            .limit(size)
        )
    )


def count_due(session: Session, now: dt.datetime, schedule: Schedule, shard: Shard = Shard()) -> int:
    """How many debtors are due (for a sweep's progress)."""
    return session.scalar(select(func.count()).select_from(Debtor).where(_due(now, schedule, shard))) or 0


def _due(now: dt.datetime, schedule: Schedule, shard: Shard) -> ColumnElement[bool]:
    active_due = or_(
        Debtor.last_queried_at.is_(None), Debtor.last_queried_at < now - dt.timedelta(schedule.requery_days)
    )
    terminated_due = and_(
        Case.status == CaseStatus.TERMINATED,
        Case.terminated_on >= (now - dt.timedelta(days=365 * schedule.terminated_years)).date(),
        or_(
            Debtor.last_queried_at.is_(None),
            Debtor.last_queried_at < now - dt.timedelta(schedule.terminated_requery_days),
        ),
    )
    # A lookup that failed at one registry, was sent and never answered (the clerk died), or was answered
    # "later" and not within the 24 hours registries have, is asked again on the next run, whatever the other
    # registries answered.
    overdue = now - dt.timedelta(hours=schedule.answer_within_h)
    later = aliased(Query)
    failed_lookup = exists().where(
        Query.debtor_id == Debtor.id,
        or_(
            Query.status.in_(UNANSWERED), and_(Query.status == LookupStatus.PENDING, Query.sent_at < overdue)
        ),
        ~exists().where(
            later.debtor_id == Query.debtor_id,
            later.registry_id == Query.registry_id,
            later.id > Query.id,
            later.status.not_in(UNANSWERED),
            ~and_(later.status == "pending", later.sent_at < overdue),
        ),
    )
    due = exists().where(
        CaseDebtor.debtor_id == Debtor.id,
        Case.id == CaseDebtor.case_id,
        or_(and_(Case.status == CaseStatus.ACTIVE, or_(active_due, failed_lookup)), terminated_due),
    )
    mine = _shard_key() % shard.count == shard.index if shard.count > 1 else true()
    return and_(due, mine)


def _shard_key() -> ColumnElement[int]:
    """What a debtor's shard is taken from: its first case's id, written when the debtor is imported
    (`Debtor.shard_key`), so that a case's debtors are swept by one shard and two shards do not wait on each
    other for the case's lock (a debtor of several cases still meets the others' shards there); the
    debtor's own id where none was written. Stable: neither ever changes."""
    return func.coalesce(Debtor.shard_key, Debtor.id)
