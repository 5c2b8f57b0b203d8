"""Use cases of the measure lifecycle: renewal, release, queued measures taking effect, lapses, deduction.

Every action on a measure (renew, release, deduct) is written down first, with its own idempotency key, in
the transaction that decided it; then it is sent; then the answer is recorded. A crash between the two
leaves a `requested` action that `resolve_actions` settles by the key's status: nothing is sent twice.
Releases and deductions begin by bumping the case's version (the case row as lock, as `control.plan`
does), so that they and new freezes are serialised per case and the cap holds.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session, selectinload, sessionmaker

from clerk import audit, cases, control
from connectors.adapter import HttpConnector
from connectors.base import (
    ControlOutcome,
    ControlReply,
    DeductPort,
    DeductReply,
    DeductRequest,
    RegistryError,
    RejectedError,
    ReleaseRequest,
    RenewRequest,
)
from models import rules
from models.tables import Asset, Case, ControlMeasure, MeasureAction, Payment, Registry, utcnow
from models.values import mask_account

#: Case statuses whose measures must all be lifted.
ENDED = ("paid", "withdrawn", "closed")
#: Case statuses whose measures are kept (and renewed) while anything is owed.
KEPT = ("active", "terminated")


@dataclass
class Tally:
    """What a lifecycle step did, in counts (no personal data)."""

    planned: int = 0
    done: int = 0
    refused: int = 0
    unconfirmed: int = 0
    expired: int = 0
    amount_fen: int = 0
    cases: set[int] = field(default_factory=set)

    def add(self, other: Tally) -> None:
        for name in ("planned", "done", "refused", "unconfirmed", "expired", "amount_fen"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.cases |= other.cases


def _lock_case(session: Session, case_id: int) -> Case:
    session.execute(update(Case).where(Case.id == case_id).values(version=Case.version + 1))
    case = session.get(Case, case_id, populate_existing=True)
    assert case is not None
    return case


def _open_action(kinds: Sequence[str]):  # type: ignore[no-untyped-def]
    return exists().where(
        MeasureAction.measure_id == ControlMeasure.id,
        MeasureAction.kind.in_(kinds),
        MeasureAction.status == "requested",
    )


def _entry(action: str, actor: str, case: Case | str, payload: dict[str, object]) -> audit.Entry:
    number = case if isinstance(case, str) else case.case_number
    return audit.Entry(action, actor, number, payload)


# --- renewal and lapse --------------------------------------------------------------------------------


def plan_renewals(session: Session, today: dt.date, lead_days: int, actor: str) -> list[int]:
    """Write down a renewal for every measure in force whose renewal day has come, of a case that still
    owes something; returns the actions' ids."""
    latest = today + dt.timedelta(days=lead_days)
    rows = session.execute(
        select(ControlMeasure, Case)
        .join(Case, Case.id == ControlMeasure.case_id)
        .where(
            ControlMeasure.status == "effective",
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
            _entry(
                "measure.renewal_requested",
                actor,
                case,
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
        .where(ControlMeasure.status == "effective", ControlMeasure.expires_on < today)
        .order_by(ControlMeasure.id)  # locked in id order (querying.record_reply)
        .with_for_update(of=ControlMeasure)
    ).all()
    lapsed, entries = [], []
    for measure, case in rows:
        assert measure.expires_on is not None
        measure.status = "expired"
        lapsed.append((case.id, measure.id))
        entries.append(
            _entry(
                "measure.expired",
                actor,
                case,
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


# --- release ------------------------------------------------------------------------------------------


def cases_to_release(session: Session, today: dt.date) -> list[int]:
    """Cases holding more than they owe today, or holding anything after they ended."""
    live = (
        select(ControlMeasure.case_id)
        .where(ControlMeasure.status.in_(control.LIVE))
        .distinct()
        .scalar_subquery()
    )
    claims = control.claims_by_case(session)
    stmt = select(Case).where(Case.id.in_(live)).order_by(Case.id).options(selectinload(Case.payments))
    return [
        case.id
        for case in session.scalars(stmt)
        if case.status in ENDED or claims.get(case.id, 0) > cases.owed(case, today).remaining
    ]


def plan_release(
    session: Session, case_id: int, today: dt.date, order: rules.ReleaseOrder, actor: str
) -> list[int]:
    """Write down the releases a case needs today: all of its measures once it is paid, withdrawn or closed;
    else the excess of its freezes over what it owes, cut by `order`. Returns the actions' ids."""
    case = _lock_case(session, case_id)
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
                MeasureAction.kind.in_(("release", "deduct")),
                MeasureAction.status == "requested",
            )
        )
    )
    if open_actions:
        return []  # an earlier release or deduction is still unanswered: decide once it is settled
    releasable = [m for m in live if m.registry_reference is not None and m.status in ("effective", "queued")]
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
            _entry(
                "measure.release_requested",
                actor,
                case,
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


# --- sending actions and recording answers ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutgoingAction:
    action_id: int
    kind: str
    registry: str
    request: RenewRequest | ReleaseRequest | DeductRequest


def outgoing_actions(session: Session, action_ids: Sequence[int], court_account: str) -> list[OutgoingAction]:
    rows = session.execute(
        select(MeasureAction, ControlMeasure, Asset.kind, Registry.code)
        .join(ControlMeasure, ControlMeasure.id == MeasureAction.measure_id)
        .join(Asset, Asset.id == ControlMeasure.asset_id)
        .join(Registry, Registry.id == ControlMeasure.registry_id)
        .where(MeasureAction.id.in_(action_ids), MeasureAction.status == "requested")
        .order_by(MeasureAction.id)
    )
    result = []
    for action, measure, asset_kind, registry in rows:
        reference = measure.registry_reference
        assert reference is not None
        key = action.idempotency_key
        request: RenewRequest | ReleaseRequest | DeductRequest
        if action.kind == "renew":
            years = rules.TERM_YEARS[rules.AssetKind(asset_kind)]
            request = RenewRequest(idempotency_key=key, registry_reference=reference, years=years)
        elif action.kind == "release":
            request = ReleaseRequest(
                idempotency_key=key, registry_reference=reference, amount_fen=action.amount_fen
            )
        else:
            assert action.amount_fen is not None
            request = DeductRequest(
                idempotency_key=key,
                registry_reference=reference,
                amount_fen=action.amount_fen,
                court_account=court_account,
            )
        result.append(OutgoingAction(action.id, action.kind, registry, request))
    return result


def _load_action(session: Session, action_id: int) -> tuple[MeasureAction, ControlMeasure, Case]:
    action = session.get(MeasureAction, action_id, with_for_update=True)
    assert action is not None
    measure = session.get(ControlMeasure, action.measure_id, with_for_update=True)
    assert measure is not None
    case = session.get(Case, measure.case_id)
    assert case is not None
    return action, measure, case


def record_action_reply(
    session: Session, action_id: int, reply: ControlReply | DeductReply, actor: str, today: dt.date
) -> str:
    """Record a registry's answer to a renewal, release or deduction; returns the action's status.
    Recording it again changes nothing."""
    action, measure, case = _load_action(session, action_id)
    if action.status != "requested":
        return action.status
    if isinstance(reply, ControlReply) and reply.outcome is ControlOutcome.PENDING:
        return action.status
    action.answered_at = utcnow()
    payload: dict[str, object] = {"measure": measure.id, "kind": measure.kind, "key": action.idempotency_key}
    if isinstance(reply, DeductReply):
        _record_deduction(session, action, measure, case, reply, actor, payload)
        return action.status
    if reply.outcome is ControlOutcome.REFUSED:
        action.status, action.result = "failed", {"reason": reply.reason}
        audit.append(
            session,
            f"measure.{action.kind}_refused",
            actor=actor,
            case_number=case.case_number,
            payload=payload | {"reason": reply.reason},
        )
        return action.status
    action.status = "done"
    if action.kind == "renew":
        before = measure.expires_on
        measure.expires_on = reply.expires_on or measure.expires_on
        action.result = {"expires_on": _iso(measure.expires_on)}
        payload |= {"expired_on_before": _iso(before), "expires_on": _iso(measure.expires_on)}
        payload |= {"reference": reply.registry_reference}
        audit.append(session, "measure.renewed", actor=actor, case_number=case.case_number, payload=payload)
        return action.status
    # a release
    if reply.outcome is ControlOutcome.RELEASED or action.amount_fen is None:
        measure.status = "released"
        measure.actual_amount_fen = 0 if measure.kind == "freeze" else None
        verb = "measure.released"
    elif action.reason == control.EXCESS_RELEASE:
        # What the registry held beyond our claim is lifted; the claim itself is what we asked, as before.
        held = measure.requested_amount_fen if reply.amount_fen is None else reply.amount_fen
        measure.actual_amount_fen = min(held, measure.requested_amount_fen)
        verb = "measure.excess_released"
    else:
        measure.requested_amount_fen = max(measure.requested_amount_fen - action.amount_fen, 0)
        measure.actual_amount_fen = reply.amount_fen
        verb = "measure.partially_released"
    case.version += 1
    action.result = {"held_fen": measure.actual_amount_fen}
    payload |= {
        "released_fen": action.amount_fen,
        "held_fen": measure.actual_amount_fen,
        "reason": action.reason,
    }
    audit.append(session, verb, actor=actor, case_number=case.case_number, payload=payload)
    return action.status


def _record_deduction(
    session: Session,
    action: MeasureAction,
    measure: ControlMeasure,
    case: Case,
    reply: DeductReply,
    actor: str,
    payload: dict[str, object],
) -> None:
    _lock_case(session, case.id)  # a payment changes what the case owes: plans wait (control.plan_cases)
    moved = reply.amount_fen
    action.status, action.result = "done", {"deducted_fen": moved, "on": reply.transferred_on.isoformat()}
    measure.actual_amount_fen = max((measure.actual_amount_fen or 0) - moved, 0)
    measure.requested_amount_fen = max(measure.requested_amount_fen - moved, 0)
    if measure.requested_amount_fen == 0:
        measure.status = "released"
    before = cases.owed(case, reply.transferred_on).remaining
    case.payments.append(Payment(paid_on=reply.transferred_on, amount_fen=moved, source="deduction"))
    session.flush()
    after = cases.owed(case, reply.transferred_on).remaining
    audit.append(
        session,
        "deduction.transferred",
        actor=actor,
        case_number=case.case_number,
        payload=payload
        | {
            "amount_fen": moved,
            "on": reply.transferred_on.isoformat(),
            "remaining_before_fen": before,
            "remaining_after_fen": after,
        },
    )
    if after == 0 and case.status in KEPT:
        cases.mark_paid(session, case, actor)


def record_action_error(session: Session, action_id: int, error: RegistryError, actor: str) -> str:
    """Refused for good (the action failed) or not confirmed (it stays requested, resolved by its key)."""
    action, measure, case = _load_action(session, action_id)
    if action.status != "requested":
        return action.status
    payload = {"measure": measure.id, "key": action.idempotency_key, "reason": error.reason}
    if isinstance(error, RejectedError):
        action.status, action.result, action.answered_at = "failed", {"reason": error.reason}, utcnow()
        audit.append(
            session,
            f"measure.{action.kind}_failed",
            actor=actor,
            case_number=case.case_number,
            payload=payload,
        )
    else:
        audit.append(
            session,
            f"measure.{action.kind}_unconfirmed",
            actor=actor,
            case_number=case.case_number,
            payload=payload,
        )
    return action.status


def unresolved_actions(session: Session, older_than: dt.datetime) -> list[int]:
    return list(
        session.scalars(
            select(MeasureAction.id)
            .where(MeasureAction.status == "requested", MeasureAction.created_at < older_than)
            .order_by(MeasureAction.id)
        )
    )


async def send_actions(
    sessions: sessionmaker[Session],
    connectors: Mapping[str, HttpConnector],
    action_ids: Sequence[int],
    actor: str,
    today: dt.date,
    court_account: str,
) -> Tally:
    """Send written-down actions and record each answer as it comes."""
    tally = Tally(planned=len(action_ids))

    def load() -> list[OutgoingAction]:
        with sessions() as session:
            return outgoing_actions(session, action_ids, court_account)

    async def one(item: OutgoingAction) -> None:
        connector = connectors.get(item.registry)
        if connector is None:
            tally.unconfirmed += 1
            return
        try:
            reply: ControlReply | DeductReply
            if isinstance(item.request, RenewRequest):
                reply = await connector.renew(item.request)
            elif isinstance(item.request, ReleaseRequest):
                reply = await connector.release(item.request)
            else:
                if not isinstance(connector, DeductPort):
                    raise RejectedError(connector.code, "this registry takes no deductions")
                reply = await connector.deduct(item.request)
        except RegistryError as exc:
            status = await asyncio.to_thread(
                in_transaction, sessions, record_action_error, item.action_id, exc, actor
            )
        else:
            status = await asyncio.to_thread(
                in_transaction, sessions, record_action_reply, item.action_id, reply, actor, today
            )
            if isinstance(reply, DeductReply):
                tally.amount_fen += reply.amount_fen
            elif isinstance(item.request, ReleaseRequest):
                tally.amount_fen += item.request.amount_fen or 0
        tally.done += status == "done"
        tally.refused += status == "failed"
        tally.unconfirmed += status == "requested"

    await asyncio.gather(*(one(item) for item in await asyncio.to_thread(load)))
    return tally


def in_transaction(sessions: sessionmaker[Session], func, *args):  # type: ignore[no-untyped-def]
    """`func(session, *args)` in a transaction of its own (for `asyncio.to_thread`)."""
    with sessions.begin() as session:
        return func(session, *args)


async def resolve_actions(
    sessions: sessionmaker[Session],
    connectors: Mapping[str, HttpConnector],
    older_than: dt.datetime,
    actor: str,
    today: dt.date,
    court_account: str,
) -> Tally:
    """Actions written down but never confirmed: the key's status says what happened; a key the registry
    never saw is sent again, with the same key."""

    def load() -> list[OutgoingAction]:
        with sessions() as session:
            return outgoing_actions(session, unresolved_actions(session, older_than), court_account)

    tally = Tally()
    unseen = []
    for item in await asyncio.to_thread(load):
        connector = connectors.get(item.registry)
        if connector is None:
            continue
        if item.kind == "deduct":
            # A deduction's status is a transfer, not a measure: the bank answers a deduction sent again
            # with its key by its first answer (connectors/bank.py), so it is simply sent again.
            unseen.append(item.action_id)
            continue
        try:
            reply = await connector.status(item.request.idempotency_key)
        except RegistryError:
            tally.unconfirmed += 1
            continue
        if reply is None:
            unseen.append(item.action_id)
        else:
            status = await asyncio.to_thread(
                in_transaction, sessions, record_action_reply, item.action_id, reply, actor, today
            )
            tally.done += status == "done"
    if unseen:
        tally.add(await send_actions(sessions, connectors, unseen, actor, today, court_account))
    return tally


# --- queued measures taking effect, partial freezes topping up ----------------------------------------


def watched_measures(session: Session) -> list[tuple[int, str, str, str]]:
    """(measure id, registry code, reference, key) of measures whose state may change at the registry:
    queued ones (an earlier measure may be lifted) and partial freezes (deposits top them up)."""
    rows = session.execute(
        select(ControlMeasure, Registry.code)
        .join(Registry, Registry.id == ControlMeasure.registry_id)
        .where(ControlMeasure.registry_reference.is_not(None))
        .where(
            (ControlMeasure.status == "queued")
            | (
                (ControlMeasure.status == "effective")
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
    if measure.status == "queued":
        return control.record_reply(session, measure_id, reply, actor) != "queued"
    if measure.status != "effective":
        return False
    case_number = session.scalar(select(Case.case_number).where(Case.id == measure.case_id))
    if reply.outcome is ControlOutcome.RELEASED:
        measure.status = "released"
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


async def refresh_measures(
    sessions: sessionmaker[Session], connectors: Mapping[str, HttpConnector], actor: str
) -> Tally:
    """Ask the registries for the state of queued and partial measures, and record what changed."""
    tally = Tally()
    watched = await asyncio.to_thread(_read, sessions, watched_measures)
    for measure_id, code, reference, key in watched:
        connector = connectors.get(code)
        if connector is None:
            continue
        try:
            reply = await connector.measure_state(reference, key)
        except RegistryError:
            tally.unconfirmed += 1
            continue
        tally.done += await asyncio.to_thread(
            in_transaction, sessions, record_state, measure_id, reply, actor
        )
    tally.planned = len(watched)
    return tally


def _read(sessions: sessionmaker[Session], func, *args):  # type: ignore[no-untyped-def]
    with sessions() as session:
        return func(session, *args)


# --- deduction ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProposedDeduction:
    measure_id: int
    registry: str
    account: str  # masked
    amount_fen: int


@dataclass(frozen=True, slots=True)
class DeductionProposal:
    case_id: int
    case_number: str
    judge: str
    remaining_fen: int
    lines: tuple[ProposedDeduction, ...]

    @property
    def total_fen(self) -> int:
        return sum(line.amount_fen for line in self.lines)


def propose_deduction(session: Session, case_number: str, today: dt.date) -> DeductionProposal:
    """What could move to the court's case account today: frozen deposits, oldest freeze first, up to what
    the case owes."""
    case = cases.get_case(session, case_number)
    rows = session.execute(
        select(ControlMeasure, Asset.identifier, Registry.code)
        .join(Asset, Asset.id == ControlMeasure.asset_id)
        .join(Registry, Registry.id == ControlMeasure.registry_id)
        .where(
            ControlMeasure.case_id == case.id,
            ControlMeasure.kind == "freeze",
            ControlMeasure.status == "effective",
            ControlMeasure.actual_amount_fen > 0,
            ControlMeasure.registry_reference.is_not(None),
        )
    ).all()
    remaining = cases.owed(case, today).remaining
    frozen = [rules.Covered(m.id, m.actual_amount_fen or 0, m.started_on or today) for m, _, _ in rows]
    info = {m.id: (code, mask_account(identifier)) for m, identifier, code in rows}
    lines = tuple(
        ProposedDeduction(a.key, info[a.key][0], info[a.key][1], a.amount)
        for a in rules.propose_deduction(remaining, frozen)
    )
    return DeductionProposal(case.id, case.case_number, case.judge, remaining, lines)


def approve_deduction(
    session: Session,
    proposal: DeductionProposal,
    approved_fen: int,
    judge: str,
    actor: str,
    decided_at: dt.datetime,
) -> list[int]:
    """A judge's approval: audited with the judge's name and time, then written down as deductions (one
    per freeze, in the proposal's order). Returns the actions' ids."""
    case = _lock_case(session, proposal.case_id)
    allocations = rules.split_approved(
        approved_fen, [rules.Allocation(line.measure_id, line.amount_fen) for line in proposal.lines]
    )
    audit.append(
        session,
        "deduction.approved",
        actor=actor,
        case_number=case.case_number,
        payload={
            "judge": judge,
            "decided_at": decided_at.isoformat(),
            "approved_fen": approved_fen,
            "proposed_fen": proposal.total_fen,
        },
    )
    ids = []
    for allocation in allocations:
        measure = session.get(ControlMeasure, allocation.key, with_for_update=True)
        assert measure is not None
        if measure.status != "effective" or (measure.actual_amount_fen or 0) < allocation.amount:
            raise ValueError("a frozen amount changed since the proposal: start the deduction again")
        ids.append(
            control.write_action(session, measure.id, "deduct", allocation.amount, f"approved by {judge}").id
        )
    return ids


def reject_deduction(
    session: Session,
    proposal: DeductionProposal,
    judge: str,
    reason: str,
    actor: str,
    decided_at: dt.datetime,
) -> None:
    audit.append(
        session,
        "deduction.rejected",
        actor=actor,
        case_number=proposal.case_number,
        payload={
            "judge": judge,
            "decided_at": decided_at.isoformat(),
            "reason": reason,
            "proposed_fen": proposal.total_fen,
        },
    )


def _iso(day: dt.date | None) -> str | None:
    return day.isoformat() if day else None
