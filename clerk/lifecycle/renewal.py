"""Use cases of the measure lifecycle: renewal, release, queued measures taking effect, lapses, deduction.

Every action on a measure (renew, release, deduct) is written down first, with its own idempotency key, in
the transaction that decided it; then it is sent; then the answer is recorded. A crash between the two
leaves a `requested` action that `resolve_actions` settles by the key's status: nothing is sent twice.
Releases and deductions begin by bumping the case's version (the case row as lock, as `control.plan`
does), so that they and new freezes are serialised per case and the cap holds.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Exists, exists, select
from sqlalchemy.orm import Session

from clerk import control
from clerk.casebook import cases, notices
from clerk.context import Context
from clerk.control import Counts
from clerk.store import audit, db
from models import rules
from models.status import KEPT, ActionStatus, MeasureStatus
from models.tables import Case, ControlMeasure, MeasureAction


def _open_action(kinds: Sequence[str]) -> Exists:
    return exists().where(
        MeasureAction.measure_id == ControlMeasure.id,
        MeasureAction.kind.in_(kinds),
        MeasureAction.status == ActionStatus.REQUESTED,
    )


def plan_renewals(session: Session, today: dt.date, lead_days: int, actor: str) -> list[int]:
    """Write down a renewal for every measure in force whose renewal day has come, of a case that still
    owes something; returns the actions' ids."""
    latest = today + dt.timedelta(days=lead_days)
    rows = session.execute(
        select(ControlMeasure, Case)
        .join(Case, Case.id == ControlMeasure.case_id)
        .where(
            ControlMeasure.status == MeasureStatus.EFFECTIVE,
            ControlMeasure.registry_reference.is_not(None),
            ControlMeasure.expires_on.is_not(None),
            ControlMeasure.expires_on <= latest,
            ControlMeasure.expires_on >= today,
            Case.status.in_(KEPT),
            ~_open_action(("renew", "release")),
        )
        .order_by(ControlMeasure.expires_on, ControlMeasure.id)
    ).all()
    ids, entries = [], []
    for measure, case in rows:
        assert measure.expires_on is not None
        if rules.renewal_due_on(measure.expires_on, lead_days) > today:
            continue
        if cases.owed(case, today).remaining <= 0:
            continue  # the release step lifts it instead
        action = control.write_action(session, measure.id, "renew", None, f"expires {measure.expires_on}")
        ids.append(action.id)
        entries.append(
            audit.Entry(
                "measure.renewal_requested",
                actor,
                case.case_number,
                {
                    "measure": measure.id,
                    "expires_on": measure.expires_on.isoformat(),
                    "key": action.idempotency_key,
                },
            )
        )
    audit.append_many(session, entries)
    return ids


def expire_lapsed(session: Session, today: dt.date, actor: str) -> list[tuple[int, int]]:
    """Measures whose term ended without a renewal: marked expired and audited, never quietly renewed.
    Returns (case id, measure id) pairs, for alerts."""
    rows = session.execute(
        select(ControlMeasure, Case)
        .join(Case, Case.id == ControlMeasure.case_id)
        .where(ControlMeasure.status == MeasureStatus.EFFECTIVE, ControlMeasure.expires_on < today)
        .order_by(ControlMeasure.id)  # locked in id order (querying.record_reply)
        .with_for_update(of=ControlMeasure)
    ).all()
    lapsed, entries = [], []
    for measure, case in rows:
        assert measure.expires_on is not None
        measure.status = MeasureStatus.EXPIRED
        lapsed.append((case.id, measure.id))
        entries.append(
            audit.Entry(
                "measure.expired",
                actor,
                case.case_number,
                {
                    "measure": measure.id,
                    "kind": measure.kind,
                    "expired_on": measure.expires_on.isoformat(),
                    "reference": measure.registry_reference,
                    "case_status": case.status,
                },
            )
        )
    audit.append_many(session, entries)
    return lapsed


@dataclass(frozen=True, slots=True)
class Lapsed:
    case_id: int
    measure_id: int
    case_number: str


@dataclass(frozen=True, slots=True)
class Renewed:
    lapsed: list[Lapsed]  # marked expired, audited and told to the judge (the flow alerts them too)
    due: int  # renewals written down and sent
    counts: Counts


def expire_and_tell(session: Session, today: dt.date, actor: str) -> list[Lapsed]:
    """Mark the measures that lapsed (`expire_lapsed`) and tell each case's judge."""
    told = []
    for case_id, measure_id in expire_lapsed(session, today, actor):
        case = session.get(Case, case_id)
        assert case is not None
        notices.notify(session, case, "judge", "measure.lapsed", {"case": case.case_number})
        told.append(Lapsed(case_id, measure_id, case.case_number))
    return told


async def renew_due(ctx: Context, lead_days: int) -> Renewed:
    """Lapses first (recorded and told), then the renewals whose day has come, written down and sent."""
    sessions, today, actor = ctx.sessions, ctx.today(), ctx.actor
    lapsed = await db.write(sessions, expire_and_tell, today, actor)
    action_ids = await db.write(sessions, plan_renewals, today, lead_days, actor)
    sent = await control.send_actions(ctx, action_ids)
    return Renewed(lapsed, len(action_ids), sent)
