"""Use cases of control: plan freezes and seizures within the cap, write them down before they are sent,
build the requests, and record what the registries answered.

Exactly once: `plan` writes each measure (status `requested`, with its idempotency key) in the transaction
that checks the cap; only then is it sent; the reply is recorded after. A crash anywhere leaves a
`requested` row that the next run resolves with the same key (`unresolved`), never a second request.

The cap holds under concurrency because `plan` begins by bumping the case's version: on PostgreSQL that
locks the case row until the transaction ends, on SQLite it takes the database's write lock. Two runs
planning the same case are serialised, and the second sees the first one's measures.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from clerk import audit, cases, db, notices
from connectors.base import (
    ControlOutcome,
    ControlReply,
    ControlRequest,
    MeasureKind,
    RegistryError,
    RejectedError,
)
from models import rules
from models.tables import Asset, Case, CaseDebtor, ControlMeasure, MeasureAction, Notification, Registry
from models.values import mask_account

LIVE = ("requested", "effective", "queued", "renewed")

_CASES, _MEASURES = db.table(Case), db.table(ControlMeasure)


@dataclass(frozen=True, slots=True)
class Policy:
    """What the clerk may do without a judge (settings)."""

    auto_freeze: bool = True
    auto_seize: frozenset[str] = frozenset({"real_estate", "vehicle"})


@dataclass
class Plan:
    case_number: str
    remaining_fen: int
    covered_before_fen: int
    measure_ids: list[int] = field(default_factory=list)
    freeze_fen: int = 0
    seizures: int = 0

    @property
    def short_fen(self) -> int:
        """What the case still owes that no freeze covers after this plan (a judge decides what next)."""
        return max(0, self.remaining_fen - self.covered_before_fen - self.freeze_fen)


def covered_by(measure: ControlMeasure) -> int:
    """What a live freeze counts against the cap: its claim, the amount it asks for. A pending or queued
    freeze may still take effect, and a partial one keeps catching deposits on its account until it holds
    its claim (banks top it up), so each counts in full; a partial release or a deduction lowers the claim."""
    if measure.kind != "freeze" or measure.status not in LIVE:
        return 0
    return max(measure.requested_amount_fen, measure.actual_amount_fen or 0)


def claims(session: Session, case_id: int) -> int:
    """What a case's live freezes claim against the cap (see `covered_by`)."""
    return sum(
        covered_by(m)
        for m in session.scalars(
            select(ControlMeasure).where(ControlMeasure.case_id == case_id, ControlMeasure.status.in_(LIVE))
        )
    )


def claims_by_case(session: Session) -> dict[int, int]:
    """Every case's claims in one read (for steps that look at all cases)."""
    result: dict[int, int] = {}
    for measure in session.scalars(select(ControlMeasure).where(ControlMeasure.status.in_(LIVE))):
        result[measure.case_id] = result.get(measure.case_id, 0) + covered_by(measure)
    return result


def plan(session: Session, case_id: int, today: dt.date, policy: Policy, actor: str) -> Plan:
    """Decide and write down the measures a case needs today, in the caller's transaction."""
    [result] = plan_cases(session, [case_id], today, policy, actor)
    return result


def plan_cases(
    session: Session, case_ids: Sequence[int], today: dt.date, policy: Policy, actor: str
) -> list[Plan]:
    """Decide and write down the measures each case needs today, in the caller's transaction; plans in
    the order of `case_ids`.

    The cases are locked first, in id order (two clerks planning overlapping cases wait for each other
    instead of deadlocking), `FOR NO KEY UPDATE`: a case's id never changes, and the stronger `FOR UPDATE`
    also waits for every insert of a row that refers to the case (a notice, a measure: PostgreSQL checks the
    reference with a `FOR KEY SHARE` lock), which a clerk recording control answers for other cases in its
    own order takes one after another; two shards of a province sweep deadlocked that way at 1,000,000
    debtors (tests/integration/test_lock_order.py). Every writer of what a case owes takes the same lock
    first. They are read together: their measures, their debtors' assets and what our live
    freezes hold on those assets, three reads for the lot. Every measure is then written in one INSERT and
    audited in one append (the audit trail's lock is taken last, after every case lock). A freeze planned
    here for one case counts against the asset for the next case that shares the debtor."""
    ids = sorted(set(case_ids))
    if not ids:
        return []
    locked = {
        case.id: case
        for case in session.scalars(
            select(Case)
            .where(Case.id.in_(ids))
            .order_by(Case.id)
            .with_for_update(key_share=True)  # FOR NO KEY UPDATE (the docstring says why)
            .options(selectinload(Case.payments))
            .execution_options(populate_existing=True)
        )
    }
    # Read under the lock, bumped in one UPDATE (the objects are told the new value, not made dirty).
    session.execute(update(_CASES).where(_CASES.c.id.in_(ids)).values(version=_CASES.c.version + 1))
    for locked_case in locked.values():
        set_committed_value(locked_case, "version", locked_case.version + 1)
    live: dict[int, list[ControlMeasure]] = {}
    for measure in session.scalars(
        select(ControlMeasure).where(ControlMeasure.case_id.in_(ids), ControlMeasure.status.in_(LIVE))
    ):
        live.setdefault(measure.case_id, []).append(measure)
    assets: dict[int, list[Asset]] = {}
    for case_id, asset in session.execute(
        select(CaseDebtor.case_id, Asset)
        .join(Asset, Asset.debtor_id == CaseDebtor.debtor_id)
        .where(CaseDebtor.case_id.in_(ids))
        .order_by(Asset.id)
    ).tuples():
        assets.setdefault(case_id, []).append(asset)
    held_on = _held_on_assets(session, sorted({a.id for group in assets.values() for a in group}))
    registries = _registry_codes(session)

    plans: dict[int, Plan] = {}
    written: list[tuple[Case, Asset, dict[str, Any]]] = []
    for case_id in ids:
        case = locked.get(case_id)
        if case is None:
            raise LookupError(f"case id {case_id} does not exist")
        owed = cases.owed(case, today)
        mine = live.get(case_id, [])
        covered = sum(covered_by(m) for m in mine)
        result = plans[case_id] = Plan(case.case_number, owed.remaining, covered)
        if case.status != "active" or owed.remaining <= covered:
            continue
        found = assets.get(case_id, [])
        if policy.auto_freeze:
            holdings = [
                rules.Holding(a.id, _available(a, held_on.get(a.id, 0))) for a in found if a.kind == "deposit"
            ]
            holdings.sort(key=lambda h: -h.available)  # largest first: touch as few banks as possible
            by_id = {a.id: a for a in found}
            for allocation in rules.allocate_freezes(owed.remaining, covered, holdings):
                asset = by_id[allocation.key]
                written.append((case, asset, _row(case, asset, "freeze", allocation.amount)))
                held_on[asset.id] = held_on.get(asset.id, 0) + allocation.amount
                result.freeze_fen += allocation.amount
        if covered + result.freeze_fen < owed.remaining:
            seized = {m.asset_id for m in mine if m.kind == "seizure"}
            for asset in found:
                if asset.kind in policy.auto_seize and asset.id not in seized:
                    written.append((case, asset, _row(case, asset, "seizure", None)))
                    result.seizures += 1
    measure_ids = (  # every measure in one INSERT, as rows (no ORM objects and flush)
        session.scalars(
            insert(_MEASURES).returning(_MEASURES.c.id, sort_by_parameter_order=True),
            [row for _, _, row in written],
        ).all()
        if written
        else []
    )
    entries: list[audit.Entry] = []
    for (case, asset, row), measure_id in zip(written, measure_ids, strict=True):
        plans[case.id].measure_ids.append(measure_id)
        entries.append(_requested(case, asset, measure_id, row, registries[asset.registry_id], actor))
    audit.append_many(session, entries)
    return [plans[case_id] for case_id in case_ids]


def _registry_codes(session: Session) -> dict[int, str]:
    """Registry id -> code; a handful of rows, read once per session."""
    codes = session.info.get("registry_codes")
    if codes is None:
        codes = session.info["registry_codes"] = {r.id: r.code for r in session.scalars(select(Registry))}
    return codes


def _held_on_assets(session: Session, asset_ids: Sequence[int]) -> dict[int, int]:
    """What our own live freezes (for any case) hold on each asset."""
    held: dict[int, int] = {}
    if not asset_ids:
        return held
    for measure in session.scalars(
        select(ControlMeasure).where(ControlMeasure.asset_id.in_(asset_ids), ControlMeasure.status.in_(LIVE))
    ):
        held[measure.asset_id] = held.get(measure.asset_id, 0) + covered_by(measure)
    return held


def _available(asset: Asset, ours: int) -> int:
    """What can still be frozen on a deposit: its balance less other authorities' measures and ours."""
    balance = asset.balance_fen or 0
    others = 0
    for measure in (asset.other_measures or {}).get("measures", []):
        amount = measure.get("amount_fen")
        others += balance if amount is None else int(amount)
    return max(balance - others - ours, 0)


def _row(case: Case, asset: Asset, kind: str, amount: int | None) -> dict[str, Any]:
    """A measure to write down (status `requested`, by the column's default)."""
    return {
        "case_id": case.id,
        "asset_id": asset.id,
        "registry_id": asset.registry_id,
        "kind": kind,
        "requested_amount_fen": amount or 0,
        "idempotency_key": uuid.uuid4().hex,
    }


def _requested(
    case: Case, asset: Asset, measure_id: int, row: dict[str, Any], registry: str, actor: str
) -> audit.Entry:
    return audit.Entry(
        "measure.requested",
        actor,
        case.case_number,
        {
            "measure": measure_id,
            "kind": row["kind"],
            "registry": registry,
            "asset": mask_account(asset.identifier),
            "amount_fen": row["requested_amount_fen"] or None,
            "key": row["idempotency_key"],
        },
    )


# --- sending and recording ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A measure ready to send: which registry, and the request (it holds personal data: keep it in memory,
    never in a task's arguments or results)."""

    measure_id: int
    registry: str
    request: ControlRequest


def outgoing(session: Session, measure_ids: Sequence[int]) -> list[Outgoing]:
    rows = session.execute(
        select(ControlMeasure, Asset, Case.case_number, Registry.code)
        .join(Asset, Asset.id == ControlMeasure.asset_id)
        .join(Case, Case.id == ControlMeasure.case_id)
        .join(Registry, Registry.id == ControlMeasure.registry_id)
        .where(ControlMeasure.id.in_(measure_ids), ControlMeasure.status == "requested")
        .order_by(ControlMeasure.id)
    )
    result = []
    for measure, asset, case_number, registry in rows:
        request = ControlRequest(
            idempotency_key=measure.idempotency_key,
            case_number=case_number,
            subject_ref=str(asset.debtor_id),
            asset_identifier=asset.identifier,
            kind=MeasureKind(measure.kind),
            amount_fen=measure.requested_amount_fen if measure.kind == "freeze" else None,
            years=rules.TERM_YEARS[rules.AssetKind(asset.kind)],
        )
        result.append(Outgoing(measure.id, registry, request))
    return result


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

    - A freeze number another of our measures at that registry already holds: the answer cannot be ours
      (untrusted: nothing of it is recorded; the measure waits, counted at its claim, for a person).
    - More held than the account's balance when it was last reported: an impossible amount (untrusted).
    - More held than asked, within the balance: the registry over-froze. Its reference is good: the measure
      is recorded at what was asked and the excess lifted at once."""
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


def record_replies(
    session: Session,
    replies: Sequence[tuple[int, ControlReply]],
    actor: str,
    excess: list[int] | None = None,
) -> list[str]:
    """Record many answers in the caller's transaction (reading their measures and cases once, writing
    the changes in one UPDATE, their notices in one INSERT); returns each measure's status, in order. See
    `record_reply`. An answer the registry got wrong (`_invalid`) is flagged (audited, and a notice to the
    judge); a release of what it held beyond what was asked is written down and its id put in `excess`,
    for the caller to send in the same run."""
    if not replies:
        return []
    ids = sorted({measure_id for measure_id, _ in replies})
    measures = {
        m.id: m
        for m in session.execute(  # in id order, like every multi-row lock here (querying.record_reply)
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
            )
            .join(Case, Case.id == ControlMeasure.case_id)
            .join(Asset, Asset.id == ControlMeasure.asset_id)
            .where(ControlMeasure.id.in_(ids))
            .order_by(ControlMeasure.id)
            .with_for_update(of=ControlMeasure)
        )
    }
    state = {i: (m.status, m.registry_reference) for i, m in measures.items()}  # as the replies go
    taken = _references_taken(session, [(measures[i].registry_id, r.registry_reference) for i, r in replies])
    flagged: list[tuple[int, int, str, str, int | None]] = []  # measure, case, number, problem, claimed
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
            flagged.append((measure_id, measure.case_id, measure.case_number, wrong[0], reply.amount_fen))
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
            flagged.append((measure_id, measure.case_id, measure.case_number, wrong[0], reply.amount_fen))
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
            "measure_id": measure_id,
            "new_status": status,
            "new_registry_reference": reply.registry_reference,
            "new_actual_amount_fen": actual,
            "new_started_on": reply.started_on,
            "new_expires_on": reply.expires_on,
            "new_queue_position": reply.queue_position,
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
                    "started_on": _iso(reply.started_on),
                    "expires_on": _iso(reply.expires_on),
                    "queue_position": reply.queue_position,
                    "reason": reply.reason,
                    "ahead": reply.ahead.authority if reply.ahead else None,
                },
            )
        )
    if changes:
        session.execute(_UPDATE_ANSWERED, list(changes.values()))
        db.expire_cached(session, ControlMeasure, changes)
    drafts.extend(_flag(session, flagged, measures, actor, entries))
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


def _flag(
    session: Session,
    flagged: Sequence[tuple[int, int, str, str, int | None]],
    measures: Mapping[int, Any],
    actor: str,
    entries: list[audit.Entry],
) -> list[notices.Draft]:
    """Each invalid answer is audited (`measure.invalid_reply`, amounts only) and its case's judge told,
    once per measure: an answer that stays wrong at every status request is not flagged again."""
    if not flagged:
        return []
    seen = {
        (n.case_id, (n.params or {}).get("measure"))
        for n in session.scalars(
            select(Notification).where(
                Notification.case_id.in_(sorted({case_id for _, case_id, _, _, _ in flagged})),
                Notification.template == "registry.invalid_reply",
            )
        )
    }
    drafts = []
    for measure_id, case_id, number, problem, claimed in flagged:
        if (case_id, measure_id) in seen:
            continue
        seen.add((case_id, measure_id))
        requested = measures[measure_id].requested_amount_fen or None
        payload = {
            "measure": measure_id,
            "problem": problem,
            "requested_fen": requested,
            "claimed_fen": claimed,
        }
        entries.append(audit.Entry("measure.invalid_reply", actor, number, payload))
        params = {"case": number, "measure": measure_id, "problem": problem}
        drafts.append(notices.Draft(case_id, "judge", "registry.invalid_reply", params))
    return drafts


_UPDATE_ANSWERED = (
    update(_MEASURES)
    .where(_MEASURES.c.id == bindparam("measure_id"))
    .values(
        {
            name: bindparam(f"new_{name}")
            for name in (
                "status",
                "registry_reference",
                "actual_amount_fen",
                "started_on",
                "expires_on",
                "queue_position",
            )
        }
    )
)


def record_error(session: Session, measure_id: int, error: RegistryError, actor: str) -> str:
    """A request that failed: refused for good (`RejectedError`: the measure failed), or not confirmed (it
    stays `requested`, to be resolved by its key's status on the next run)."""
    measure = session.get(ControlMeasure, measure_id, with_for_update=True)
    assert measure is not None
    if measure.status != "requested":
        return measure.status
    case_number = session.scalar(select(Case.case_number).where(Case.id == measure.case_id))
    if isinstance(error, RejectedError):
        measure.status = "failed"
        action = "measure.failed"
    else:
        action = "measure.unconfirmed"
    audit.append(
        session,
        action,
        actor=actor,
        case_number=case_number,
        payload={"measure": measure.id, "reason": error.reason},
    )
    return measure.status


def unresolved(session: Session, older_than: dt.datetime) -> list[int]:
    """Measures written down but not confirmed before `older_than`: ask their keys' status."""
    return list(
        session.scalars(
            select(ControlMeasure.id)
            .where(ControlMeasure.status == "requested", ControlMeasure.created_at < older_than)
            .order_by(ControlMeasure.id)
        )
    )


def _iso(day: dt.date | None) -> str | None:
    return day.isoformat() if day else None
