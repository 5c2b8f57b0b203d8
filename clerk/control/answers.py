"""Recording what registries answered to a freeze or seizure, in the caller's transaction: the measure's
status, reference, amount held and term, its notices and audit events; recording the same answer again
changes nothing. An answer the registry got wrong (more held than asked, another measure's reference, more
than the balance) is flagged for a person, and what it held beyond what was asked is released at once. An
answer that cannot be read at all is an unknown outcome (`record_error`): the request keeps its claim, is
flagged once, and is settled by its key like a lost answer; only the registry's refusal fails it.
Also `write_action`: the one way a renewal, release or deduction is written down before it is sent, and
`flagged`: what was flagged for a person, by measure and action.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from clerk.casebook import notices
from clerk.store import audit, bulk, db
from connectors.base import (
    ControlOutcome,
    ControlReply,
    RegistryError,
    is_refusal,
    is_unreadable,
)
from models import casesheet
from models.casesheet import HoldToCheck
from models.status import LIVE, MeasureStatus
from models.tables import Asset, Case, ControlMeasure, MeasureAction, Notification, Registry
from models.values import CaseNumber, InvalidValue, iso_date, mask_account

_STATUS = {
    ControlOutcome.EFFECTIVE: "effective",
    ControlOutcome.PARTIAL: "effective",
    ControlOutcome.QUEUED: "queued",
    ControlOutcome.REFUSED: "failed",
    ControlOutcome.RELEASED: "released",
}


def record_reply(session: Session, measure_id: int, reply: ControlReply, actor: str) -> str:
    """Record a registry's answer to a control request; returns the measure's status. Recording the same
    answer twice changes nothing."""
    return record_replies(session, [(measure_id, reply)], actor)[0]


#: The reason written on a release that lifts what a registry held beyond what we asked.
EXCESS_RELEASE = "the registry held more than was asked"


def _invalid(measure: Any, reply: ControlReply, taken: dict[tuple[int, str], int]) -> tuple[str, bool] | None:
    """What is wrong with a registry's answer, by the law's rule that its errors are never our measure
    (GLOSSARY: "A registry's answer that holds more than was asked … is the registry's error"), and whether
    the answer can still be trusted for its reference: (problem, trusted), or None when it is sound.

    - An answer that names another account or another case than the one asked: the registry mixed up its
      answers (untrusted: nothing of it is recorded; the measure waits, counted at its claim, for a person).
    - A freeze number another of our measures at that registry already holds: the answer cannot be ours
      (untrusted, the same).
    - More held than the account's balance when it was last reported: an impossible amount (untrusted).
    - More held than asked, within the balance: the registry over-froze. Its reference is good: the measure
      is recorded at what was asked and the excess lifted at once."""
    if reply.account is not None and reply.account != measure.identifier:
        return "it names another account than the one asked", False
    if reply.case_number is not None and not _same_case(reply.case_number, measure.case_number):
        return "it names another case than the one asked", False
    reference = reply.registry_reference
    if reference is not None and taken.get((measure.registry_id, reference), measure.id) != measure.id:
        return "its reference already names another of our measures", False
    if (
        measure.kind != "freeze"
        or reply.amount_fen is None
        or reply.amount_fen <= measure.requested_amount_fen
    ):
        return None
    if measure.balance_fen is not None and reply.amount_fen > measure.balance_fen:
        return "it claims to hold more than the account's balance", False
    return "it holds more than was asked", True


def _same_case(named: str, ours: str) -> bool:
    if named == ours:  # as we sent it (most answers): nothing to parse
        return True
    try:
        return str(CaseNumber.parse(named)) == ours
    except InvalidValue:
        return False


def record_replies(
    session: Session,
    replies: Sequence[tuple[int, ControlReply]],
    actor: str,
    excess: list[int] | None = None,
    invalid: list[int] | None = None,
) -> list[str]:
    """Record many answers in the caller's transaction (reading their measures and cases once, writing
    the changes in one UPDATE, their notices in one INSERT); returns each measure's status, in order. See
    `record_reply`. An answer the registry got wrong (`_invalid`) is flagged (audited, and a notice to the
    judge); a release of what it held beyond what was asked is written down and its id put in `excess`,
    for the caller to send in the same run; the measures flagged for the first time go into `invalid`."""
    if not replies:
        return []
    ids = sorted({measure_id for measure_id, _ in replies})
    measures = {
        m.id: m
        for m in db.all_rows(  # locked in id order (PostgreSQL), like every multi-row lock here
            session,
            select(
                ControlMeasure.id,
                ControlMeasure.case_id,
                ControlMeasure.kind,
                ControlMeasure.status,
                ControlMeasure.registry_reference,
                ControlMeasure.requested_amount_fen,
                ControlMeasure.registry_id,
                Case.case_number,
                Asset.balance_fen,
                Asset.identifier,
            )
            .join(Case, Case.id == ControlMeasure.case_id)
            .join(Asset, Asset.id == ControlMeasure.asset_id)
            .where(ControlMeasure.id.in_(ids))
            .order_by(ControlMeasure.id)
            .with_for_update(of=ControlMeasure),
        )
    }
    state = {i: (m.status, m.registry_reference) for i, m in measures.items()}  # as the replies go
    taken = _references_taken(session, [(measures[i].registry_id, r.registry_reference) for i, r in replies])
    flagged: list[Flag] = []
    changes: dict[int, dict[str, Any]] = {}
    drafts: list[notices.Draft] = []
    entries: list[audit.Entry] = []
    statuses = []
    for measure_id, reply in replies:
        measure, (current, reference) = measures[measure_id], state[measure_id]
        # An answer "later" changes nothing, nor does any answer to a settled measure (effective, failed,
        # released); a queued one may still take effect.
        if reply.outcome is ControlOutcome.PENDING or current not in ("requested", "queued"):
            statuses.append(current)
            continue
        status = _STATUS[reply.outcome]
        wrong = _invalid(measure, reply, taken) if status in ("effective", "queued") else None
        if wrong is not None and not wrong[1]:
            statuses.append(current)  # not recorded: the measure waits, counted at its claim
            flagged.append(Flag.of(measure, wrong[0], reply.amount_fen))
            continue
        statuses.append(status)
        if (current, reference) == (status, reply.registry_reference):
            continue  # this very answer, recorded before
        state[measure_id] = (status, reply.registry_reference)
        if reply.registry_reference is not None:
            taken[(measure.registry_id, reply.registry_reference)] = measure_id
        actual = reply.amount_fen if measure.kind == "freeze" else None
        if wrong is not None:  # held more than asked: recorded at what was asked, the excess lifted now
            assert reply.amount_fen is not None
            actual = measure.requested_amount_fen
            flagged.append(Flag.of(measure, wrong[0], reply.amount_fen))
            release = write_action(
                session,
                measure_id,
                "release",
                reply.amount_fen - measure.requested_amount_fen,
                EXCESS_RELEASE,
            )
            if excess is not None:
                excess.append(release.id)
        changes[measure_id] = {
            "id": measure_id,
            "status": status,
            "registry_reference": reply.registry_reference,
            "actual_amount_fen": actual,
            "started_on": reply.started_on,
            "expires_on": reply.expires_on,
            "queue_position": reply.queue_position,
        }
        if status in ("effective", "queued"):
            params = {"case": measure.case_number, "kind": measure.kind, "amount_fen": actual}
            drafts.append(notices.Draft(measure.case_id, "applicant", f"measure.{status}", params))
        action = "measure.partial" if reply.outcome is ControlOutcome.PARTIAL else f"measure.{status}"
        entries.append(
            audit.Entry(
                action,
                actor,
                measure.case_number,
                {
                    "measure": measure_id,
                    "kind": measure.kind,
                    "requested_fen": measure.requested_amount_fen or None,
                    "actual_fen": actual,
                    "reference": reply.registry_reference,
                    "started_on": iso_date(reply.started_on),
                    "expires_on": iso_date(reply.expires_on),
                    "queue_position": reply.queue_position,
                    "reason": reply.reason,
                    "ahead": reply.ahead.authority if reply.ahead else None,
                },
            )
        )
    if changes:
        bulk.update_rows(session, db.table(ControlMeasure), list(changes.values()))
        db.expire_cached(session, ControlMeasure, changes)
    new_flags = flag(session, flagged, actor, entries)
    drafts.extend(draft for _, draft in new_flags)
    if invalid is not None:  # the measures flagged now for the first time (a Prefect event each registry)
        invalid.extend(measure_id for measure_id, _ in new_flags)
    notices.notify_many(session, drafts)
    audit.append_many(session, entries)
    return statuses


def write_action(
    session: Session, measure_id: int, kind: str, amount: int | None, reason: str
) -> MeasureAction:
    """Write down a renewal, release or deduction of a measure (status `requested`, with its own key), in the
    transaction that decided it; the lifecycle sends it."""
    action = MeasureAction(
        measure_id=measure_id, kind=kind, amount_fen=amount, idempotency_key=uuid.uuid4().hex, reason=reason
    )
    session.add(action)
    session.flush()
    return action


def _references_taken(
    session: Session, wanted: Sequence[tuple[int, str | None]]
) -> dict[tuple[int, str], int]:
    """(registry id, reference) -> the measure that holds it, for the references these answers name (one
    read per registry, by the index on the two)."""
    by_registry: dict[int, set[str]] = {}
    for registry_id, reference in wanted:
        if reference is not None:
            by_registry.setdefault(registry_id, set()).add(reference)
    taken: dict[tuple[int, str], int] = {}
    for registry_id, references in sorted(by_registry.items()):
        rows = session.execute(
            select(ControlMeasure.registry_reference, ControlMeasure.id).where(
                ControlMeasure.registry_id == registry_id,
                ControlMeasure.registry_reference.in_(sorted(references)),
            )
        )
        taken.update(((registry_id, reference), measure) for reference, measure in rows if reference)
    return taken


class Flag(NamedTuple):
    """An answer flagged for a person: which measure (and which of its actions, for a renewal, release or
    deduction), which case, the problem in words, what we asked and what the answer claimed (fen)."""

    measure_id: int
    case_id: int
    case_number: str
    problem: str
    requested_fen: int | None
    claimed_fen: int | None = None
    action_id: int | None = None

    @classmethod
    def of(cls, measure: Any, problem: str, claimed: int | None = None) -> Flag:
        """A measure's flag, from its row (id, case_id, case_number, requested_amount_fen)."""
        requested = measure.requested_amount_fen or None
        return cls(measure.id, measure.case_id, measure.case_number, problem, requested, claimed)


#: The problem written for an answer that cannot be read (its adapter's reason follows).
UNREADABLE = "its answer cannot be read"


def flagged(session: Session, case_ids: Sequence[int]) -> dict[tuple[int, int | None], str]:
    """What was flagged for a person on these cases: (measure id, action id or None) -> the problem. Read
    from the judge's notices (one per measure or action), the record the flags leave."""
    if not case_ids:
        return {}
    found: dict[tuple[int, int | None], str] = {}
    for params in session.scalars(
        select(Notification.params).where(
            Notification.case_id.in_(sorted(set(case_ids))),
            Notification.template == "registry.invalid_reply",
        )
    ):
        if params and "measure" in params:
            found[(int(params["measure"]), params.get("action"))] = str(params.get("problem", ""))
    return found


def holds_to_check(session: Session, case_ids: Sequence[int]) -> list[HoldToCheck]:
    """The live holds of these cases that the clerk cannot settle on its own: a measure whose answer is not
    known (`requested`), or one flagged (its answer, or an open release's or deduction's, was wrong or
    unreadable). For cases that ended or owe nothing, each is an operator's task (the release flow's summary,
    the case sheet); the asset is masked."""
    if not case_ids:
        return []
    wanted = sorted(set(case_ids))
    flags = flagged(session, wanted)
    open_flags: dict[int, list[str]] = {}  # measure -> what its open releases or deductions were flagged for
    for measure_id, action_id in session.execute(
        select(MeasureAction.measure_id, MeasureAction.id)
        .join(ControlMeasure, ControlMeasure.id == MeasureAction.measure_id)
        .where(ControlMeasure.case_id.in_(wanted), MeasureAction.status == "requested")
        .order_by(MeasureAction.id)
    ):
        if (measure_id, action_id) in flags:
            open_flags.setdefault(measure_id, []).append(flags[(measure_id, action_id)])
    rows = session.execute(
        select(ControlMeasure.id, ControlMeasure.kind, ControlMeasure.status, Case.case_number)
        .add_columns(Asset.identifier, Registry.code)
        .join(Case, Case.id == ControlMeasure.case_id)
        .join(Asset, Asset.id == ControlMeasure.asset_id)
        .join(Registry, Registry.id == ControlMeasure.registry_id)
        .where(ControlMeasure.case_id.in_(wanted), ControlMeasure.status.in_(LIVE))
        .order_by(ControlMeasure.id)
    )
    result = []
    for measure_id, kind, status, number, identifier, registry in rows:
        # An open release or deduction answered wrongly first; then a measure whose own answer is awaited.
        problem = open_flags.get(measure_id, [None])[0]
        if problem is None and status == MeasureStatus.REQUESTED:
            problem = flags.get((measure_id, None), casesheet.UNKNOWN)
        if problem is not None:
            result.append(
                casesheet.HoldToCheck(number, measure_id, registry, mask_account(identifier), kind, problem)
            )
    return result


def flag(
    session: Session, flags: Sequence[Flag], actor: str, entries: list[audit.Entry]
) -> list[tuple[int, notices.Draft]]:
    """Each flagged answer is audited (`measure.invalid_reply`, amounts only) and its case's judge told,
    once per measure (or action): an answer that stays wrong at every status request is not flagged again.
    Returns the new flags' measures and notices (the caller writes the notices)."""
    if not flags:
        return []
    seen = set(flagged(session, [f.case_id for f in flags]))
    drafts = []
    for f in flags:
        if (f.measure_id, f.action_id) in seen:
            continue
        seen.add((f.measure_id, f.action_id))
        payload: dict[str, Any] = {
            "measure": f.measure_id,
            "problem": f.problem,
            "requested_fen": f.requested_fen,
            "claimed_fen": f.claimed_fen,
        }
        params: dict[str, Any] = {"case": f.case_number, "measure": f.measure_id, "problem": f.problem}
        if f.action_id is not None:
            payload["action"] = params["action"] = f.action_id
        entries.append(audit.Entry("measure.invalid_reply", actor, f.case_number, payload))
        drafts.append((f.measure_id, notices.Draft(f.case_id, "judge", "registry.invalid_reply", params)))
    return drafts


def flag_unreadable(
    session: Session, row: Flag, error: RegistryError, actor: str, entries: list[audit.Entry]
) -> bool:
    """Flag a request whose answer cannot be read (the problem is the adapter's reason), the notice written
    now and the audit entry added to `entries`; whether it was flagged for the first time."""
    new = flag(session, [row._replace(problem=f"{UNREADABLE}: {error.reason}")], actor, entries)
    notices.notify_many(session, [draft for _, draft in new])
    return bool(new)


def record_error(
    session: Session, measure_id: int, error: RegistryError, actor: str, invalid: list[int] | None = None
) -> str:
    """A request that failed: refused for good (`is_refusal`: the measure failed), or not confirmed (it
    stays `requested`, counted at its claim, to be resolved by its key's status on the next run). An answer
    that came but cannot be read is flagged for a person the first time (its measure goes into `invalid`)."""
    measure = session.get(ControlMeasure, measure_id, with_for_update=True)
    assert measure is not None
    if measure.status != MeasureStatus.REQUESTED:
        return measure.status
    case_number = session.scalar(select(Case.case_number).where(Case.id == measure.case_id))
    assert case_number is not None
    entries: list[audit.Entry] = []
    if is_unreadable(error):  # flagged the first time; after that it waits, flagged, for its key's status
        row = Flag(measure.id, measure.case_id, case_number, "", measure.requested_amount_fen or None)
        if flag_unreadable(session, row, error, actor, entries) and invalid is not None:
            invalid.append(measure.id)
    else:
        if is_refusal(error):
            measure.status = MeasureStatus.FAILED
        action = "measure.failed" if is_refusal(error) else "measure.unconfirmed"
        entries.append(
            audit.Entry(action, actor, case_number, {"measure": measure.id, "reason": error.reason})
        )
    audit.append_many(session, entries)
    return measure.status
