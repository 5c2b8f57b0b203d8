"""The registry scoreboard: per registry, how it kept the 24-hour rule (models.scoreboard) in a window —
requests, answers, answer times, late answers, requests still unanswered past 24 hours, refusals and invalid
answers. `clerk registries report` prints it; the daily report carries it; the deadlines flow alerts a
registry with overdue requests."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from models.scoreboard import ANSWER_WITHIN, Score, score
from models.status import LookupStatus, MeasureStatus
from models.tables import ControlMeasure, Notification, Query, Registry


def registry_scoreboard(
    session: Session, start: dt.datetime, end: dt.datetime, now: dt.datetime
) -> list[Score]:
    """Every registry's score for requests sent from `start` to `end`; `overdue` counts whatever is still
    unanswered past 24 hours at `now`. Lookups have answer times; control requests are counted (sent,
    refused, still unanswered) without them."""
    overdue_before = now - ANSWER_WITHIN
    codes = dict(session.execute(select(Registry.id, Registry.code)).tuples().all())
    times: dict[int, list[float]] = {r: [] for r in codes}
    for registry_id, sent_at, answered_at in session.execute(
        select(Query.registry_id, Query.sent_at, Query.answered_at).where(
            Query.sent_at >= start,
            Query.sent_at < end,
            Query.status == LookupStatus.ANSWERED,
            Query.answered_at.is_not(None),
        )
    ).tuples():
        if answered_at is not None:
            times[registry_id].append((answered_at - sent_at).total_seconds())
    lookups = _count(session, Query.registry_id, Query.sent_at, start, end)
    measures = _count(session, ControlMeasure.registry_id, ControlMeasure.created_at, start, end)
    refused = _count(
        session, Query.registry_id, Query.sent_at, start, end, Query.status == LookupStatus.FAILED
    )
    refused_control = _count(
        session,
        ControlMeasure.registry_id,
        ControlMeasure.created_at,
        start,
        end,
        ControlMeasure.status == MeasureStatus.FAILED,
    )
    overdue = dict(
        session.execute(
            select(Query.registry_id, func.count())
            .where(
                Query.status.in_((LookupStatus.SENT, LookupStatus.PENDING)), Query.sent_at < overdue_before
            )
            .group_by(Query.registry_id)
        )
        .tuples()
        .all()
    )
    overdue_control = dict(
        session.execute(
            select(ControlMeasure.registry_id, func.count())
            .where(
                ControlMeasure.status == MeasureStatus.REQUESTED, ControlMeasure.created_at < overdue_before
            )
            .group_by(ControlMeasure.registry_id)
        )
        .tuples()
        .all()
    )
    invalid = _invalid_by_registry(session, start, end)
    return [
        score(
            code,
            lookups.get(rid, 0) + measures.get(rid, 0),
            times[rid],
            overdue.get(rid, 0) + overdue_control.get(rid, 0),
            refused.get(rid, 0) + refused_control.get(rid, 0),
            invalid.get(rid, 0),
        )
        for rid, code in sorted(codes.items(), key=lambda item: item[1])
    ]


def _count(
    session: Session,
    registry: InstrumentedAttribute[int],
    sent: InstrumentedAttribute[dt.datetime],
    start: dt.datetime,
    end: dt.datetime,
    *where: ColumnElement[bool],
) -> dict[int, int]:
    """Rows sent in the window (and matching `where`), by registry."""
    stmt = select(registry, func.count()).where(sent >= start, sent < end, *where).group_by(registry)
    return dict(session.execute(stmt).tuples().all())


def _invalid_by_registry(session: Session, start: dt.datetime, end: dt.datetime) -> dict[int, int]:
    """Invalid control answers flagged in the window (one notice per measure, to the judge), by registry."""
    measure_ids = [
        int(n.params["measure"])
        for n in session.scalars(
            select(Notification).where(
                Notification.template == "registry.invalid_reply",
                Notification.created_at >= start,
                Notification.created_at < end,
            )
        )
        if n.params and "measure" in n.params
    ]
    result: dict[int, int] = {}
    for registry_id in session.scalars(
        select(ControlMeasure.registry_id).where(ControlMeasure.id.in_(measure_ids))
    ):
        result[registry_id] = result.get(registry_id, 0) + 1
    return result


def late_to_alert(session: Session, now: dt.datetime) -> list[Score]:
    """The registries with requests still open after 24 hours that were not alerted in the last 24 hours;
    each is marked alerted now (the deadlines flow raises the alert: once a day while a registry is late)."""
    late = [s for s in registry_scoreboard(session, now - ANSWER_WITHIN, now, now) if s.overdue]
    if not late:
        return []
    due = []
    for registry in session.scalars(
        select(Registry).where(Registry.code.in_([s.registry for s in late])).with_for_update()
    ):
        alerted = registry.late_alerted_at
        if alerted is None or alerted <= now - ANSWER_WITHIN:
            registry.late_alerted_at = now
            due.append(registry.code)
    return [s for s in late if s.registry in due]
