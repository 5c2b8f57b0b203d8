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

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from clerk import control
from clerk.casebook import cases
from clerk.context import Context
from clerk.control import Counts
from clerk.store import audit, db, locks
from models import rules
from models.casesheet import HoldToCheck
from models.status import ENDED, ActionKind, ActionStatus, MeasureStatus
from models.tables import Case, ControlMeasure, MeasureAction, utcnow


def cases_to_release(session: Session, today: dt.date) -> list[int]:
    """Cases holding more than they owe today, or holding anything after they ended."""
    return [case_id for case_id, ended in _holding(session, today) if ended is not None]


def _holding(session: Session, today: dt.date) -> list[tuple[int, bool | None]]:
    """Each case with live measures: True when it ended or owes nothing, False when its freezes claim more
    than it owes, None otherwise."""
    live = (
        select(ControlMeasure.case_id)
        .where(ControlMeasure.status.in_(control.LIVE))
        .distinct()
        .scalar_subquery()
    )
    claims = control.claims_by_case(session)
    stmt = select(Case).where(Case.id.in_(live)).order_by(Case.id).options(selectinload(Case.payments))
    result: list[tuple[int, bool | None]] = []
    for case in session.scalars(stmt):
        owed = cases.owed(case, today).remaining
        ended = case.status in ENDED or owed == 0
        result.append((case.id, True if ended else (False if claims.get(case.id, 0) > owed else None)))
    return result


def plan_release(
    session: Session, case_id: int, today: dt.date, order: rules.ReleaseOrder, actor: str
) -> list[int]:
    """Write down the releases a case needs today: all of its measures once it is paid, withdrawn or closed;
    else the excess of its freezes over what it owes, cut by `order`. Returns the actions' ids."""
    case = locks.lock_case(session, case_id)
    live = list(
        session.scalars(
            select(ControlMeasure)
            .where(ControlMeasure.case_id == case_id, ControlMeasure.status.in_(control.LIVE))
            .order_by(ControlMeasure.id)
        )
    )
    open_actions = set(
        session.scalars(
            select(MeasureAction.measure_id).where(
                MeasureAction.measure_id.in_([m.id for m in live]),
                MeasureAction.kind.in_((ActionKind.RELEASE, ActionKind.DEDUCT)),
                MeasureAction.status == ActionStatus.REQUESTED,
            )
        )
    )
    if open_actions:
        return []  # an earlier release or deduction is still unanswered: decide once it is settled
    releasable = [
        m
        for m in live
        if m.registry_reference is not None and m.status in (MeasureStatus.EFFECTIVE, MeasureStatus.QUEUED)
    ]
    owed = cases.owed(case, today).remaining
    cuts: list[tuple[ControlMeasure, int | None]]
    if case.status in ENDED or owed == 0:
        reason = f"case {case.status}" if case.status in ENDED else "nothing owed"
        cuts = [(m, None) for m in releasable]
    else:
        reason = "more frozen than owed"
        pending = sum(control.covered_by(m) for m in live if m not in releasable)
        freezes = [m for m in releasable if m.kind == "freeze"]
        by_id = {m.id: m for m in freezes}
        covered = [
            rules.Covered(m.id, control.covered_by(m), m.started_on or m.created_at.date()) for m in freezes
        ]
        cuts = []
        for cut in rules.excess_releases(max(owed - pending, 0), covered, order):
            measure = by_id[cut.key]
            cuts.append((measure, None if cut.amount >= control.covered_by(measure) else cut.amount))
    ids, entries = [], []
    for measure, amount in cuts:
        action = control.write_action(session, measure.id, "release", amount, reason)
        ids.append(action.id)
        entries.append(
            audit.Entry(
                "measure.release_requested",
                actor,
                case.case_number,
                {
                    "measure": measure.id,
                    "kind": measure.kind,
                    "amount_fen": amount,
                    "whole": amount is None,
                    "reason": reason,
                    "owed_fen": owed,
                    "key": action.idempotency_key,
                },
            )
        )
    audit.append_many(session, entries)
    return ids


@dataclass(frozen=True, slots=True)
class Released:
    cases: int  # cases that held more than they owe, or anything after they ended
    releases: int  # releases written down and sent
    counts: Counts
    #: Holds of cases that ended or owe nothing which the clerk could not lift on its own (an answer
    #: unknown or flagged): each an operator's task, masked.
    to_check: tuple[HoldToCheck, ...] = ()


def plan_releases(
    sessions: sessionmaker[Session],
    today: dt.date,
    order: rules.ReleaseOrder,
    actor: str,
    case_ids: Sequence[int] | None = None,
) -> tuple[int, list[int]]:
    """Write down the releases every case needs today (`case_ids`, when the caller read them already: the
    cases `cases_to_release` names), each case in a transaction of its own (under its lock); returns how
    many cases, and the actions' ids."""
    if case_ids is None:
        case_ids = db.reading(sessions, cases_to_release, today)
    ids: list[int] = []
    for case_id in case_ids:
        ids += db.in_transaction(sessions, plan_release, case_id, today, order, actor)
    return len(case_ids), ids


async def release_due(ctx: Context, order: rules.ReleaseOrder) -> Released:
    """Release what the cap no longer allows (`plan_release`), and send the releases. The holds of cases that
    ended whose answers are not known yet are asked for by their keys first, so that what the registry
    confirms now is lifted in this run; what stays unknown or flagged is an operator's task (`to_check`)."""
    sessions, today, actor = ctx.sessions, ctx.today(), ctx.actor
    holding = await db.read(sessions, _holding, today)  # read once: settling by key changes no case's claim
    ended = [case_id for case_id, is_ended in holding if is_ended]
    unknown = await db.read(sessions, _requested_measures, ended)
    # Rows are stamped in real time, whatever the context's clock says: every hold asked so far is asked.
    settled = await control.resolve_unconfirmed(ctx, utcnow(), unknown) if unknown else Counts()
    to_release = [case_id for case_id, is_ended in holding if is_ended is not None]
    count, action_ids = await db.call(sessions, plan_releases, today, order, actor, to_release)
    sent = await control.send_actions(ctx, action_ids)
    sent.add_flags(settled.invalid_replies)
    to_check = await db.read(sessions, control.holds_to_check, ended)
    return Released(count, len(action_ids), sent, tuple(to_check))


def _requested_measures(session: Session, case_ids: Sequence[int]) -> list[int]:
    """The measures of these cases whose answers are not known yet (`requested`)."""
    return list(
        session.scalars(
            select(ControlMeasure.id)
            .where(ControlMeasure.case_id.in_(case_ids), ControlMeasure.status == MeasureStatus.REQUESTED)
            .order_by(ControlMeasure.id)
        )
    )
