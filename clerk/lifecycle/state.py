"""Use cases of the measure lifecycle: renewal, release, queued measures taking effect, lapses, deduction.

Every action on a measure (renew, release, deduct) is written down first, with its own idempotency key, in
the transaction that decided it; then it is sent; then the answer is recorded. A crash between the two
leaves a `requested` action that `resolve_actions` settles by the key's status: nothing is sent twice.
Releases and deductions begin by bumping the case's version (the case row as lock, as `control.plan`
does), so that they and new freezes are serialised per case and the cap holds.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from clerk import control
from clerk.context import Context
from clerk.control import Counts
from clerk.store import audit, db
from connectors.base import (
    ControlOutcome,
    ControlReply,
    RegistryError,
)
from models.status import MeasureStatus
from models.tables import Case, ControlMeasure, Registry


def watched_measures(session: Session) -> list[tuple[int, str, str, str]]:
    """(measure id, registry code, reference, key) of measures whose state may change at the registry:
    queued ones (an earlier measure may be lifted) and partial freezes (deposits top them up)."""
    rows = session.execute(
        select(ControlMeasure, Registry.code)
        .join(Registry, Registry.id == ControlMeasure.registry_id)
        .where(ControlMeasure.registry_reference.is_not(None))
        .where(
            (ControlMeasure.status == MeasureStatus.QUEUED)
            | (
                (ControlMeasure.status == MeasureStatus.EFFECTIVE)
                & (ControlMeasure.kind == "freeze")
                & (ControlMeasure.actual_amount_fen < ControlMeasure.requested_amount_fen)
            )
        )
        .order_by(ControlMeasure.id)
    )
    return [(m.id, code, m.registry_reference, m.idempotency_key) for m, code in rows if m.registry_reference]


def record_state(session: Session, measure_id: int, reply: ControlReply, actor: str) -> bool:
    """A measure's state now, as the registry reports it: a queued measure that took effect (with its new
    start and expiry), a partial freeze that holds more, or a measure the registry lifted. Returns whether
    anything changed."""
    measure = session.get(ControlMeasure, measure_id, with_for_update=True)
    assert measure is not None
    if measure.status == MeasureStatus.QUEUED:
        return control.record_reply(session, measure_id, reply, actor) != "queued"
    if measure.status != MeasureStatus.EFFECTIVE:
        return False
    case_number = session.scalar(select(Case.case_number).where(Case.id == measure.case_id))
    if reply.outcome is ControlOutcome.RELEASED:
        measure.status = MeasureStatus.RELEASED
        audit.append(
            session,
            "measure.lifted_by_registry",
            actor=actor,
            case_number=case_number,
            payload={"measure": measure.id, "reference": measure.registry_reference},
        )
        return True
    if reply.amount_fen is not None and reply.amount_fen != measure.actual_amount_fen:
        before = measure.actual_amount_fen
        measure.actual_amount_fen = min(reply.amount_fen, measure.requested_amount_fen)
        audit.append(
            session,
            "measure.topped_up",
            actor=actor,
            case_number=case_number,
            payload={"measure": measure.id, "held_before_fen": before, "held_fen": measure.actual_amount_fen},
        )
        return True
    return False


async def refresh_measures(ctx: Context) -> Counts:
    """Ask the registries for the state of queued and partial measures, and record what changed."""
    sessions, connectors, actor = ctx.sessions, ctx.ports, ctx.actor
    tally = Counts()
    watched = await db.read(sessions, watched_measures)
    for measure_id, code, reference, key in watched:
        connector = connectors.get(code)
        if connector is None:
            continue
        try:
            reply = await connector.measure_state(reference, key)
        except RegistryError:
            tally.unconfirmed += 1
            continue
        tally.done += await db.write(sessions, record_state, measure_id, reply, actor)
    tally.planned = len(watched)
    return tally
