"""The daily report: per court and judge, what the clerk did on one Beijing calendar day, read from the
audit trail (the one record of every step) and the query log, beside the active caseload by track. No
personal data: counts and amounts."""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from clerk.casebook import exports
from clerk.store import audit
from models.status import CaseStatus, MeasureStatus
from models.supervision import bureau_today, start_of
from models.tables import Asset, AuditEvent, Case, CaseDebtor, ControlMeasure, NodeNotice, Query

COLUMNS = (
    "court",
    "judge",
    "queries",
    "hits",
    "frozen",
    "frozen_fen",
    "seized",
    "renewed",
    "released",
    "deductions",
    "deducted_fen",
    "money_in",
    "money_in_fen",
    "lapsed",
    "overdue_nodes",
    "active_fast",
    "active_simple",
    "active_normal",
    "active_special",
    "active_untriaged",
)

_COUNTED = {
    "hit.recorded": "hits",
    "measure.renewed": "renewed",
    "measure.released": "released",
    "measure.partially_released": "released",
    "measure.expired": "lapsed",
}


def daily(session: Session, day: dt.date) -> list[dict[str, object]]:
    """One row per (court, judge) with any activity on `day`, sorted; amounts in fen."""
    start, end = start_of(day), start_of(day + dt.timedelta(days=1))
    owners = {
        n: (court, judge)
        for n, court, judge in session.execute(select(Case.case_number, Case.court_code, Case.judge))
    }
    rows: dict[tuple[str, str], dict[str, object]] = {}

    def row(key: tuple[str, str]) -> dict[str, object]:
        return rows.setdefault(key, {c: 0 for c in COLUMNS} | {"court": key[0], "judge": key[1]})

    def bump(key: tuple[str, str], column: str, by: int = 1) -> None:
        r = row(key)
        r[column] = int(r[column]) + by  # type: ignore[call-overload]

    events = session.execute(
        select(AuditEvent.action, AuditEvent.case_number, AuditEvent.payload).where(
            AuditEvent.occurred_at >= start, AuditEvent.occurred_at < end, AuditEvent.case_number.is_not(None)
        )
    )
    for action, number, payload in events:
        key = owners.get(number)
        if key is None:
            continue
        if action in _COUNTED:
            bump(key, _COUNTED[action])
        elif action in ("measure.effective", "measure.partial"):
            data = json.loads(payload)
            if data.get("kind") == "freeze":
                bump(key, "frozen")
                bump(key, "frozen_fen", int(data.get("actual_fen") or 0))
            else:
                bump(key, "seized")
        elif action in ("money.arrived", "money.assigned"):  # case money placed with the case
            bump(key, "money_in")
            bump(key, "money_in_fen", sum(-fen for fen in json.loads(payload)["legs"].values() if fen < 0))
        elif action == "deduction.transferred":
            bump(key, "deductions")
            bump(key, "deducted_fen", int(json.loads(payload).get("amount_fen") or 0))
    queries = session.execute(
        select(Case.court_code, Case.judge, func.count())
        .select_from(Query)
        .join(CaseDebtor, CaseDebtor.debtor_id == Query.debtor_id)
        .join(Case, Case.id == CaseDebtor.case_id)
        .where(Query.sent_at >= start, Query.sent_at < end)
        .group_by(Case.court_code, Case.judge)
    )
    for court, judge, count in queries:
        bump((court, judge), "queries", count)
    overdue = session.execute(
        select(Case.court_code, Case.judge, func.count())
        .select_from(NodeNotice)
        .join(Case, Case.id == NodeNotice.case_id)
        .where(NodeNotice.level == "overdue", NodeNotice.noticed_at >= start, NodeNotice.noticed_at < end)
        .group_by(Case.court_code, Case.judge)
    )
    for court, judge, count in overdue:
        bump((court, judge), "overdue_nodes", count)
    for court, judge, track, count in session.execute(
        select(Case.court_code, Case.judge, Case.track, func.count())
        .where(Case.status == CaseStatus.ACTIVE, Case.court_code.in_({k[0] for k in rows} or {""}))
        .group_by(Case.court_code, Case.judge, Case.track)
    ):
        if (court, judge) in rows:  # the caseload by track beside the day's work
            bump((court, judge), f"active_{track or 'untriaged'}", count)
    return [rows[k] for k in sorted(rows)]


def totals(rows: Iterable[dict[str, object]]) -> dict[str, int]:
    sums: dict[str, int] = {}
    for r in rows:
        for column in COLUMNS[2:]:
            sums[column] = sums.get(column, 0) + int(r[column])  # type: ignore[call-overload]
    return sums


def write_csv(
    path: Path, rows: Iterable[dict[str, object]], *, replace: bool = False, field: str = "--csv"
) -> int:
    """The report as CSV (UTF-8 with BOM, for spreadsheets); a cell a spreadsheet would run is escaped.
    Written as `exports.open_new` writes: no link followed, no file replaced unless `replace`."""
    count = 0
    with exports.open_new(path, field=field, replace=replace, encoding="utf-8-sig") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: audit.spreadsheet_safe(v) if isinstance(v, str) else v for k, v in r.items()})
            count += 1
    return count


def yesterday(now: dt.datetime) -> dt.date:
    return bureau_today(now) - dt.timedelta(days=1)


@dataclass(frozen=True)
class BookTotals:
    """The case book in figures (the demo's summary): cases, lookups and hits, and the measures by state."""

    cases: int
    cases_queried: int  # debtors asked about at least once
    lookups: int
    failed_lookups: int
    hits: int
    measures_effective: int
    frozen_fen: int
    partial: int  # freezes in force for less than was asked
    queued: int
    seizures: int
    unconfirmed: int


def book_totals(session: Session) -> BookTotals:
    def count(stmt: Select[Any]) -> int:
        return int(session.scalar(stmt) or 0)

    measures = select(func.count()).select_from(ControlMeasure)
    in_force = measures.where(ControlMeasure.status == MeasureStatus.EFFECTIVE)
    return BookTotals(
        cases=count(select(func.count()).select_from(Case)),
        cases_queried=count(select(func.count(func.distinct(Query.debtor_id)))),
        lookups=count(select(func.count()).select_from(Query)),
        failed_lookups=count(select(func.count()).select_from(Query).where(Query.status == "failed")),
        hits=count(select(func.count()).select_from(Asset)),
        measures_effective=count(in_force),
        frozen_fen=count(
            select(func.coalesce(func.sum(ControlMeasure.actual_amount_fen), 0)).where(
                ControlMeasure.status == MeasureStatus.EFFECTIVE, ControlMeasure.kind == "freeze"
            )
        ),
        partial=count(
            in_force.where(
                ControlMeasure.kind == "freeze",
                ControlMeasure.actual_amount_fen < ControlMeasure.requested_amount_fen,
            )
        ),
        queued=count(measures.where(ControlMeasure.status == MeasureStatus.QUEUED)),
        seizures=count(in_force.where(ControlMeasure.kind == "seizure")),
        unconfirmed=count(measures.where(ControlMeasure.status == MeasureStatus.REQUESTED)),
    )
