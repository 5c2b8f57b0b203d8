"""Renewals, releases and deductions of measures (actions), sent and settled: how one is read, sent,
recorded and counted (`Actions`, an exchange of `control.exchange`). The lifecycle decides them and writes
them down (`control.write_action`); this sends them once and records what the registries answered.
Recording a release or a deduction takes the case lock (`store.locks`): what the case holds changed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from clerk.casebook import cases
from clerk.context import Context
from clerk.control import answers, exchange
from clerk.control.answers import EXCESS_RELEASE
from clerk.control.counts import Counts
from clerk.control.exchange import Answer, Outgoing, Reply
from clerk.store import audit, locks
from connectors.base import (
    ControlOutcome,
    ControlReply,
    DeductPort,
    DeductReply,
    DeductRequest,
    RegistryError,
    RegistryPort,
    RejectedError,
    ReleaseRequest,
    RenewRequest,
    is_refusal,
    is_unreadable,
)
from models import rules
from models.status import KEPT, ActionKind, ActionStatus, MeasureStatus
from models.tables import (
    Asset,
    Case,
    ControlMeasure,
    MeasureAction,
    Payment,
    Registry,
    Subaccount,
    utcnow,
)
from models.values import iso_date


def outgoing_actions(session: Session, action_ids: Sequence[int], court_account: str) -> list[Outgoing]:
    """The actions of these ids still `requested`, as requests. A deduction is paid into its case's
    sub-account at the court's bank (一案一账号), or the court's account while the case has none yet."""
    rows = session.execute(
        select(MeasureAction, ControlMeasure, Asset.kind, Registry.code, Subaccount.number)
        .join(ControlMeasure, ControlMeasure.id == MeasureAction.measure_id)
        .join(Asset, Asset.id == ControlMeasure.asset_id)
        .join(Registry, Registry.id == ControlMeasure.registry_id)
        .outerjoin(Subaccount, Subaccount.case_id == ControlMeasure.case_id)
        .where(MeasureAction.id.in_(action_ids), MeasureAction.status == ActionStatus.REQUESTED)
        .order_by(MeasureAction.id)
    )
    result = []
    for action, measure, asset_kind, registry, subaccount in rows:
        reference = measure.registry_reference
        assert reference is not None
        key = action.idempotency_key
        request: RenewRequest | ReleaseRequest | DeductRequest
        if action.kind == ActionKind.RENEW:
            years = rules.TERM_YEARS[rules.AssetKind(asset_kind)]
            request = RenewRequest(idempotency_key=key, registry_reference=reference, years=years)
        elif action.kind == ActionKind.RELEASE:
            request = ReleaseRequest(
                idempotency_key=key, registry_reference=reference, amount_fen=action.amount_fen
            )
        else:
            assert action.amount_fen is not None
            request = DeductRequest(
                idempotency_key=key,
                registry_reference=reference,
                amount_fen=action.amount_fen,
                court_account=subaccount or court_account,
            )
        result.append(Outgoing(action.id, action.kind, registry, request))
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
    if action.status != ActionStatus.REQUESTED:
        return action.status
    if isinstance(reply, ControlReply) and reply.outcome is ControlOutcome.PENDING:
        return action.status
    action.answered_at = utcnow()
    payload: dict[str, object] = {"measure": measure.id, "kind": measure.kind, "key": action.idempotency_key}
    if isinstance(reply, DeductReply):
        _record_deduction(session, action, measure, case, reply, actor, payload)
        return action.status
    if reply.outcome is ControlOutcome.REFUSED:
        action.status, action.result = ActionStatus.FAILED, {"reason": reply.reason}
        audit.append(
            session,
            f"measure.{action.kind}_refused",
            actor=actor,
            case_number=case.case_number,
            payload=payload | {"reason": reply.reason},
        )
        return action.status
    action.status = ActionStatus.DONE
    if action.kind == ActionKind.RENEW:
        before = measure.expires_on
        measure.expires_on = reply.expires_on or measure.expires_on
        action.result = {"expires_on": iso_date(measure.expires_on)}
        payload |= {"expired_on_before": iso_date(before), "expires_on": iso_date(measure.expires_on)}
        payload |= {"reference": reply.registry_reference}
        audit.append(session, "measure.renewed", actor=actor, case_number=case.case_number, payload=payload)
        return action.status
    # a release
    if reply.outcome is ControlOutcome.RELEASED or action.amount_fen is None:
        measure.status = MeasureStatus.RELEASED
        measure.actual_amount_fen = 0 if measure.kind == "freeze" else None
        verb = "measure.released"
    elif action.reason == EXCESS_RELEASE:
        # What the registry held beyond our claim is lifted; the claim itself is what we asked, as before.
        held = measure.requested_amount_fen if reply.amount_fen is None else reply.amount_fen
        measure.actual_amount_fen = min(held, measure.requested_amount_fen)
        verb = "measure.excess_released"
    else:
        measure.requested_amount_fen = max(measure.requested_amount_fen - action.amount_fen, 0)
        measure.actual_amount_fen = reply.amount_fen
        verb = "measure.partially_released"
    locks.lock_case(session, case.id)  # what the case holds changed: plans wait
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
    locks.lock_case(session, case.id)  # a payment changes what the case owes: plans wait (control.plan_cases)
    moved = reply.amount_fen
    action.status, action.result = (
        ActionStatus.DONE,
        {"deducted_fen": moved, "on": reply.transferred_on.isoformat()},
    )
    measure.actual_amount_fen = max((measure.actual_amount_fen or 0) - moved, 0)
    measure.requested_amount_fen = max(measure.requested_amount_fen - moved, 0)
    if measure.requested_amount_fen == 0:
        measure.status = MeasureStatus.RELEASED
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


def record_action_error(
    session: Session, action_id: int, error: RegistryError, actor: str, invalid: list[int] | None = None
) -> str:
    """Refused for good (`is_refusal`: the action failed) or not confirmed (it stays requested, resolved by
    its key). An answer that came but cannot be read is an unknown outcome, never a refusal: a release so
    answered is not counted as released, a deduction not as moved; it is flagged for a person the first
    time (the action's id goes into `invalid`) and settled by its key."""
    action, measure, case = _load_action(session, action_id)
    if action.status != ActionStatus.REQUESTED:
        return action.status
    if is_unreadable(error):
        entries: list[audit.Entry] = []
        row = answers.Flag(measure.id, case.id, case.case_number, "", action.amount_fen, None, action.id)
        if answers.flag_unreadable(session, row, error, actor, entries) and invalid is not None:
            invalid.append(action.id)
        audit.append_many(session, entries)
        return action.status
    payload = {"measure": measure.id, "key": action.idempotency_key, "reason": error.reason}
    if is_refusal(error):
        action.status, action.result, action.answered_at = (
            ActionStatus.FAILED,
            {"reason": error.reason},
            utcnow(),
        )
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


@dataclass
class Actions:
    """The exchange of renewals, releases and deductions (`control.exchange.Exchange`)."""

    actor: str
    today: dt.date
    court_account: str
    batched: bool = False  # each answer in its own transaction: a deduction changes what a case owes
    rows: type[MeasureAction] = MeasureAction
    #: The registry of each answer found unreadable for the first time (one entry per action).
    invalid: list[str] = field(default_factory=list)

    def load(self, session: Session, ids: Sequence[int]) -> list[Outgoing]:
        return outgoing_actions(session, ids, self.court_account)

    def asks_status(self, item: Outgoing) -> bool:
        # A deduction's status is a transfer, not a measure: the bank answers a deduction sent again with
        # its key by its first answer (connectors/bank.py), so it is simply sent again.
        return item.kind != ActionKind.DEDUCT

    async def call(self, registry: RegistryPort, item: Outgoing) -> Reply:
        if isinstance(item.request, RenewRequest):
            return await registry.renew(item.request)
        if isinstance(item.request, ReleaseRequest):
            return await registry.release(item.request)
        assert isinstance(item.request, DeductRequest)
        if not isinstance(registry, DeductPort):
            raise RejectedError(registry.code, "this registry takes no deductions")
        return await registry.deduct(item.request)

    def record(self, session: Session, answered: Sequence[tuple[Outgoing, Answer]]) -> list[str]:
        invalid: list[int] = []
        statuses = [
            record_action_error(session, item.id, answer, self.actor, invalid)
            if isinstance(answer, RegistryError)
            else record_action_reply(session, item.id, answer, self.actor, self.today)
            for item, answer in answered
        ]
        registry = {item.id: item.registry for item, _ in answered}
        self.invalid.extend(registry[action_id] for action_id in invalid)
        return statuses

    def count(self, counts: Counts, item: Outgoing, answer: Answer, status: str) -> None:
        if isinstance(answer, DeductReply):
            counts.amount_fen += answer.amount_fen
        elif isinstance(answer, ControlReply) and isinstance(item.request, ReleaseRequest):
            counts.amount_fen += item.request.amount_fen or 0
        counts.done += status == ActionStatus.DONE
        counts.refused += status == ActionStatus.FAILED
        counts.unconfirmed += status == ActionStatus.REQUESTED


async def send_actions(ctx: Context, action_ids: Sequence[int]) -> Counts:
    """Send written-down actions and record each answer as it comes (`control.exchange.send`)."""
    actions = Actions(ctx.actor, ctx.today(), ctx.court_account)
    counts = await exchange.send(ctx, actions, action_ids)
    counts.planned += len(action_ids)
    counts.flagged(actions.invalid)
    return counts


async def resolve_actions(ctx: Context, older_than: dt.datetime) -> Counts:
    """Actions written down but never confirmed, settled by their keys (`control.exchange.settle`)."""
    actions = Actions(ctx.actor, ctx.today(), ctx.court_account)
    counts = await exchange.settle(ctx, actions, older_than)
    counts.flagged(actions.invalid)
    return counts
