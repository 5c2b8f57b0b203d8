"""Use cases of supervision: triage after the first full query, resuming terminated cases on a hit, and
node deadlines with their warnings and alerts (told to judges through `clerk.notices`).

Node notices are recorded once per (case, node, subject, level), so a check may run as often as it likes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from clerk import control
from clerk.casebook import cases
from clerk.casebook.notices import notify
from clerk.store import audit, locks
from models import supervision as rules
from models.status import CaseStatus, MeasureStatus
from models.tables import (
    Asset,
    AuditEvent,
    Case,
    CaseDebtor,
    ControlMeasure,
    Debtor,
    NodeNotice,
    Payment,
)
from models.values import CaseNumber

RESUMED_WORD = "执恢"


# --- triage -------------------------------------------------------------------------------------------


def triage_new(
    session: Session, today: dt.date, triage_rules: rules.TriageRules, actor: str
) -> dict[str, int]:
    """Route every active case without a track whose debtors have all been queried; returns counts by
    track. A judge's track is never overwritten."""
    unqueried = (
        select(CaseDebtor.case_id)
        .join(Debtor, Debtor.id == CaseDebtor.debtor_id)
        .where(Debtor.last_queried_at.is_(None))
    )
    counts: dict[str, int] = {}
    entries = []
    for case in session.scalars(
        select(Case).where(Case.status == CaseStatus.ACTIVE, Case.track.is_(None), Case.id.not_in(unqueried))
    ):
        remaining = cases.owed(case, today).remaining
        track = rules.triage(remaining, _found(session, case.id), triage_rules)
        case.track, case.track_source = track.value, "auto"
        counts[track.value] = counts.get(track.value, 0) + 1
        entries.append(
            audit.Entry(
                "case.triaged", actor, case.case_number, {"track": track.value, "owed_fen": remaining}
            )
        )
    audit.append_many(session, entries)
    return counts


def _found(session: Session, case_id: int) -> int:
    """What the queries found that can pay the case: deposits' balances less others' measures, plus what
    its freezes already claim."""
    debtors = select(CaseDebtor.debtor_id).where(CaseDebtor.case_id == case_id)
    found = 0
    for asset in session.scalars(select(Asset).where(Asset.kind == "deposit", Asset.debtor_id.in_(debtors))):
        others = sum(int(m.get("amount_fen") or 0) for m in (asset.other_measures or {}).get("measures", []))
        found += max((asset.balance_fen or 0) - others, 0)
    claimed = control.claims(session, case_id)
    return max(found, claimed)


# --- terminated cases resumed on a hit ----------------------------------------------------------------


def resume(session: Session, case_ids: Sequence[int], today: dt.date, actor: str) -> list[int]:
    """Terminated-for-now cases whose re-query found assets: each opens a resumed case (a new 执恢 case
    number, linked to the original, with its debtors, debt and payments), the original becomes `resumed`,
    its live measures move over, and the judge and the applicant are told. Returns the new cases' ids."""
    new_ids = []
    for case_id in case_ids:
        original = locks.lock_cases(session, [case_id]).get(case_id)
        if original is None or original.status != CaseStatus.TERMINATED:
            continue
        number = _next_resumed_number(session, original, today)
        resumed = Case(
            case_number=number,
            court_code=original.court_code,
            filed_on=today,
            judge=original.judge,
            applicant=original.applicant,
            principal_fen=original.principal_fen,
            judgment_interest_fen=original.judgment_interest_fen,
            costs_fen=original.costs_fen,
            performance_due_on=original.performance_due_on,
            resumed_from_id=original.id,
        )
        session.add(resumed)
        session.flush()
        for link in session.scalars(select(CaseDebtor).where(CaseDebtor.case_id == original.id)):
            session.add(CaseDebtor(case_id=resumed.id, debtor_id=link.debtor_id))
        for payment in session.scalars(select(Payment).where(Payment.case_id == original.id)):
            session.add(
                Payment(
                    case_id=resumed.id,
                    paid_on=payment.paid_on,
                    amount_fen=payment.amount_fen,
                    source=f"carried:{payment.source}"[:32],
                )
            )
        carried = list(
            session.scalars(
                select(ControlMeasure).where(
                    ControlMeasure.case_id == original.id, ControlMeasure.status.in_(control.LIVE)
                )
            )
        )
        for measure in carried:
            measure.case_id = resumed.id
        moved = len(carried)
        original.status = CaseStatus.RESUMED
        payload = {"original": original.case_number, "resumed_as": number, "measures_moved": moved}
        audit.append_many(
            session,
            [
                audit.Entry("case.resumed", actor, original.case_number, payload),
                audit.Entry("case.opened_on_resumption", actor, number, payload),
            ],
        )
        params = {"original": original.case_number, "resumed_as": number}
        notify(session, resumed, "judge", "case.resumed", params)
        notify(session, resumed, "applicant", "case.resumed", params)
        new_ids.append(resumed.id)
    session.flush()
    return new_ids


def _next_resumed_number(session: Session, original: Case, today: dt.date) -> str:
    prefix = f"（{today.year}）{original.court_code}{RESUMED_WORD}"
    existing = session.scalars(select(Case.case_number).where(Case.case_number.like(f"{prefix}%"))).all()
    top = max((CaseNumber.parse(n).sequence for n in existing), default=0)
    return str(
        CaseNumber(year=today.year, court=original.court_code, case_type=RESUMED_WORD, sequence=top + 1)
    )


def tell_applicants_of_requery(session: Session, case_ids: Sequence[int], actor: str) -> int:
    """The rule: tell the applicant of every re-query of a terminated case, found or not."""
    count = 0
    for case in session.scalars(
        select(Case).where(Case.id.in_(case_ids), Case.status == CaseStatus.TERMINATED)
    ):
        notify(session, case, "applicant", "case.requeried", {"case": case.case_number, "found": False})
        count += 1
    return count


# --- node deadlines -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reached:
    """A node that reached a level now (recorded once)."""

    case_id: int
    case_number: str
    judge: str
    track: str | None
    deadline: rules.Deadline
    level: rules.Level


def check_deadlines(session: Session, now: dt.datetime, node_rules: rules.NodeRules) -> list[Reached]:
    """Every node deadline of every active case, checked now; records and returns the levels reached for
    the first time, and writes a notice to the judge for each."""
    candidates: list[tuple[Case, rules.Deadline]] = []
    active = list(
        session.scalars(
            select(Case).where(Case.status == CaseStatus.ACTIVE).options(selectinload(Case.payments))
        )
    )
    today = rules.bureau_today(now)
    owed = {c.id: cases.owed(c, today).remaining for c in active}
    by_id = {c.id: c for c in active}
    unqueried = set(
        session.scalars(
            select(CaseDebtor.case_id)
            .join(Debtor, Debtor.id == CaseDebtor.debtor_id)
            .where(Debtor.last_queried_at.is_(None))
        )
    )
    for case in active:
        if case.id in unqueried:
            candidates.append((case, rules.query_deadline(case.filed_on, case.created_at, node_rules)))
    # control: a hit of an active case that is short of what it owes, with no measure of the case on it
    live: dict[int, list[ControlMeasure]] = {}
    for m in session.scalars(select(ControlMeasure).where(ControlMeasure.status.in_(control.LIVE))):
        live.setdefault(m.case_id, []).append(m)
    for case_id, asset in session.execute(
        select(CaseDebtor.case_id, Asset)
        .join(Asset, Asset.debtor_id == CaseDebtor.debtor_id)
        .where(CaseDebtor.case_id.in_(list(by_id)))
    ):
        case = by_id[case_id]
        measures = live.get(case_id, [])
        if any(m.asset_id == asset.id for m in measures):
            continue
        if sum(control.covered_by(m) for m in measures) >= owed[case_id]:
            continue
        if asset.kind == "deposit" and (asset.balance_fen or 0) == 0:
            continue
        candidates.append((case, rules.control_deadline(asset.id, asset.first_seen_at, node_rules)))
    # renewal: measures in force of active cases
    for case_id, measures in live.items():
        for m in measures:
            if case_id in by_id and m.status == MeasureStatus.EFFECTIVE and m.expires_on is not None:
                candidates.append((by_id[case_id], rules.renewal_deadline(m.id, m.expires_on, node_rules)))
    # supervision: the last step recorded for the case
    last: dict[str | None, dt.datetime] = dict(
        session.execute(  # type: ignore[arg-type]
            select(AuditEvent.case_number, func.max(AuditEvent.occurred_at))
            .where(AuditEvent.case_number.in_([c.case_number for c in active]))
            .group_by(AuditEvent.case_number)
        ).all()
    )
    for case in active:
        progress = last.get(case.case_number) or case.created_at
        if progress.tzinfo is None:
            progress = progress.replace(tzinfo=dt.UTC)
        track = rules.Track(case.track) if case.track else None
        deadline = rules.supervision_deadline(progress, track, node_rules)
        # each period of silence is its own subject, named by the day it began
        subject = f"since:{progress.astimezone(rules.CHINA).date().isoformat()}"
        candidates.append((case, dataclasses.replace(deadline, subject=subject)))

    noticed = {
        (n.case_id, n.node, n.subject, n.level)
        for n in session.scalars(select(NodeNotice).where(NodeNotice.case_id.in_(list(by_id))))
    }
    reached = []
    for case, deadline in candidates:
        level = deadline.level(now)
        if level is None or (case.id, deadline.node.value, deadline.subject, level.value) in noticed:
            continue
        session.add(
            NodeNotice(
                case_id=case.id,
                node=deadline.node.value,
                subject=deadline.subject,
                level=level.value,
                due_at=deadline.due_at,
                noticed_at=now,
            )
        )
        noticed.add((case.id, deadline.node.value, deadline.subject, level.value))
        notify(
            session,
            case,
            "judge",
            f"node.{level.value}",
            {"case": case.case_number, "node": deadline.node.value, "due_at": deadline.due_at.isoformat()},
        )
        reached.append(Reached(case.id, case.case_number, case.judge, case.track, deadline, level))
    audit.append_many(
        session,
        [
            audit.Entry(
                f"node.{r.level.value}",
                audit.Actor.SYSTEM,
                r.case_number,
                {
                    "node": r.deadline.node.value,
                    "subject": r.deadline.subject,
                    "due_at": r.deadline.due_at.isoformat(),
                },
            )
            for r in reached
        ],
    )
    return reached
