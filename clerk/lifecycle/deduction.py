"""Use cases of the measure lifecycle: renewal, release, queued measures taking effect, lapses, deduction.

Every action on a measure (renew, release, deduct) is written down first, with its own idempotency key, in
the transaction that decided it; then it is sent; then the answer is recorded. A crash between the two
leaves a `requested` action that `resolve_actions` settles by the key's status: nothing is sent twice.
Releases and deductions begin by bumping the case's version (the case row as lock, as `control.plan`
does), so that they and new freezes are serialised per case and the cap holds.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from clerk import control
from clerk.casebook import access, cases, notices
from clerk.context import Context
from clerk.lifecycle import proof
from clerk.store import audit, locks
from models import exemptions, rules
from models.access import Action, Person
from models.exemptions import NO_EXEMPTIONS, Exemptions
from models.status import MeasureStatus
from models.tables import Asset, Case, ControlMeasure, Debtor, MeasureAction, Registry
from models.values import mask_account


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
    allowance_kept_fen: int = 0  # frozen, but left with a person as the living allowance
    protected_left: int = 0  # frozen accounts whose purpose is protected (no override): not deducted

    @property
    def total_fen(self) -> int:
        return sum(line.amount_fen for line in self.lines)


#: A freeze of ours in force with money on it: what a deduction can move.
HOLDING_MONEY = (
    ControlMeasure.kind == "freeze",
    ControlMeasure.status == MeasureStatus.EFFECTIVE,
    ControlMeasure.actual_amount_fen > 0,
)


def propose_deduction(
    session: Session, case_number: str, today: dt.date, exempt: Exemptions = NO_EXEMPTIONS
) -> DeductionProposal:
    """What could move to the court's case account today: frozen deposits, oldest freeze first, up to what
    the case owes, and never what the law leaves with the debtor (models.exemptions, checked again today):
    a protected account's money stays unless a judge overrode that for the case, and a natural person keeps
    the living allowance across all of the person's deposits."""
    case = cases.get_case(session, case_number)
    rows = session.execute(
        select(ControlMeasure, Asset.identifier, Asset.debtor_id, Registry.code)
        .join(Asset, Asset.id == ControlMeasure.asset_id)
        .join(Registry, Registry.id == ControlMeasure.registry_id)
        .where(
            ControlMeasure.case_id == case.id,
            *HOLDING_MONEY,
            ControlMeasure.registry_reference.is_not(None),
        )
    ).all()
    remaining = cases.owed(case, today).remaining
    room = _room(session, case, {debtor for _, _, debtor, _ in rows}, exempt, today)
    asset_of = {m.id: m.asset_id for m, _, _, _ in rows}
    protected = [m for m in asset_of if asset_of[m] in room.protected]
    frozen = [
        rules.Covered(m.id, m.actual_amount_fen or 0, m.started_on or today)
        for m, _, _, _ in rows
        if m.asset_id not in room.protected
    ]
    # The allowance first, then what is owed: what one person must keep, another's freeze may still cover.
    oldest_first = sorted(frozen, key=lambda f: (f.placed_on, f.key))
    debtor_of = {m.id: debtor for m, _, debtor, _ in rows}
    allowed: dict[int, int] = {}
    for debtor in {debtor_of[f.key] for f in frozen}:
        mine = [rules.Holding(f.key, f.amount) for f in oldest_first if debtor_of[f.key] == debtor]
        allowed |= {h.key: h.available for h in room.take(debtor, mine)}
    movable = [rules.Covered(f.key, allowed[f.key], f.placed_on) for f in frozen]
    proposed = rules.propose_deduction(remaining, movable)
    info = {m.id: (code, mask_account(identifier)) for m, identifier, _, code in rows}
    lines = tuple(ProposedDeduction(a.key, info[a.key][0], info[a.key][1], a.amount) for a in proposed)
    without_allowance = rules.propose_deduction(remaining, frozen)
    kept = sum(a.amount for a in without_allowance) - sum(a.amount for a in proposed)
    return DeductionProposal(case.id, case.case_number, case.judge, remaining, lines, kept, len(protected))


def _room(
    session: Session, case: Case, debtor_ids: set[int], exempt: Exemptions, today: dt.date
) -> exemptions.Room:
    """The law's reckoning (`models.exemptions.room_for`) of these debtors' deposits for the deduction:
    each deposit's last reported balance less other authorities' measures, less what our freezes for other
    cases hold on it (this case's freezes are what moves)."""
    rows = session.execute(
        select(ControlMeasure.asset_id, func.coalesce(func.sum(ControlMeasure.actual_amount_fen), 0))
        .join(Asset, Asset.id == ControlMeasure.asset_id)
        .where(
            Asset.debtor_id.in_(debtor_ids),
            ControlMeasure.case_id != case.id,
            ControlMeasure.kind == "freeze",
            ControlMeasure.status == MeasureStatus.EFFECTIVE,
        )
        .group_by(ControlMeasure.asset_id)
    )
    held_elsewhere = {asset_id: int(total) for asset_id, total in rows}
    deposits = [
        exemptions.Deposit(
            a.id, a.debtor_id, control.cap.available(a, 0), held_elsewhere.get(a.id, 0), a.purpose
        )
        for a in session.scalars(
            select(Asset).where(Asset.debtor_id.in_(debtor_ids), Asset.kind == "deposit")
        )
    ]
    people = {
        d.id: d.dependants
        for d in session.scalars(select(Debtor).where(Debtor.id.in_(debtor_ids), Debtor.kind == "person"))
    }
    return exemptions.room_for(exempt, case, today, deposits, people)


def approve_deduction(
    session: Session,
    proposal: DeductionProposal,
    approved_fen: int,
    judge: str,
    actor: str,
    decided_at: dt.datetime,
    proved: proof.Proved | None = None,
) -> list[int]:
    """A judge's approval: audited with the judge's name and time and how it was proven (its code spent
    here, once), then written down as deductions (one per freeze, in the proposal's order). Returns the
    actions' ids."""
    locks.lock_case(session, proposal.case_id)  # deductions change what the case owes
    allocations = rules.split_approved(
        approved_fen, [rules.Allocation(line.measure_id, line.amount_fen) for line in proposal.lines]
    )
    _decided(session, proposal, "approved", judge, actor, decided_at, proved, approved_fen=approved_fen)
    ids = []
    for allocation in allocations:
        measure = session.get(ControlMeasure, allocation.key, with_for_update=True)
        assert measure is not None
        if measure.status != MeasureStatus.EFFECTIVE or (measure.actual_amount_fen or 0) < allocation.amount:
            raise ValueError("a frozen amount changed since the proposal: start the deduction again")
        ids.append(
            control.write_action(session, measure.id, "deduct", allocation.amount, f"approved by {judge}").id
        )
    return ids


@dataclass(frozen=True, slots=True)
class Moved:
    """One approved deduction as it stands after sending: `status` is the action's (done, failed, or
    requested while the bank's answer is awaited)."""

    registry: str
    account: str  # masked
    amount_fen: int
    status: str


def deduction_outcome(session: Session, action_ids: Sequence[int]) -> list[Moved]:
    """What each approved deduction did, in the proposal's order."""
    rows = session.execute(
        select(MeasureAction, Asset.identifier, Registry.code)
        .join(ControlMeasure, ControlMeasure.id == MeasureAction.measure_id)
        .join(Asset, Asset.id == ControlMeasure.asset_id)
        .join(Registry, Registry.id == ControlMeasure.registry_id)
        .where(MeasureAction.id.in_(list(action_ids)))
    ).all()
    by_id = {
        action.id: Moved(code, mask_account(ident), action.amount_fen or 0, action.status)
        for action, ident, code in rows
    }
    return [by_id[i] for i in action_ids if i in by_id]


def reject_deduction(
    session: Session,
    proposal: DeductionProposal,
    judge: str,
    reason: str,
    actor: str,
    decided_at: dt.datetime,
    proved: proof.Proved | None = None,
) -> None:
    _decided(session, proposal, "rejected", judge, actor, decided_at, proved, reason=reason)


def _decided(
    session: Session,
    proposal: DeductionProposal,
    verdict: str,
    judge: str,
    actor: str,
    decided_at: dt.datetime,
    proved: proof.Proved | None,
    **detail: object,
) -> None:
    """A judge's decision on the record: who, when, on how much, how it was proven (the code's row or the
    key's id, never the code), and the verdict's own detail."""
    proof.spend(session, proved, decided_at)
    payload = {
        "judge": judge,
        "decided_at": decided_at.isoformat(),
        **detail,
        "proposed_fen": proposal.total_fen,
        **({"proof": proved.audit()} if proved else {}),
    }
    audit.append(
        session, f"deduction.{verdict}", actor=actor, case_number=proposal.case_number, payload=payload
    )


def start_deduction(
    ctx: Context,
    case_number: str,
    requested_by: str,
    people: Mapping[str, Person],
    flow_run_id: str | None,
) -> DeductionProposal:
    """Check who asks (`access.authorize_case`: a refusal is audited and raised, by the context's actor),
    propose what could move today, and, when anything could, tell the case's judge that a decision is
    awaited."""
    sessions = ctx.sessions
    access.authorize_case(sessions, case_number, requested_by, Action.QUERY, people, ctx.actor)
    with sessions.begin() as session:
        proposal = propose_deduction(session, case_number, ctx.today(), ctx.policy.exempt)
        if proposal.lines:
            params = {"case": proposal.case_number, "amount_fen": proposal.total_fen, "flow_run": flow_run_id}
            notices.notify_case(session, proposal.case_id, "judge", "deduction.awaiting", params)
    return proposal


def remind_judge(session: Session, proposal: DeductionProposal) -> None:
    """A decision is still awaited: the judge is told again."""
    params = {"case": proposal.case_number, "amount_fen": proposal.total_fen}
    notices.notify_case(session, proposal.case_id, "judge", "deduction.reminder", params)


def record_timeout(session: Session, proposal: DeductionProposal, actor: str) -> None:
    """No decision came in time: nothing moves, and the audit trail says so."""
    payload = {"proposed_fen": proposal.total_fen}
    audit.append(
        session, "deduction.timed_out", actor=actor, case_number=proposal.case_number, payload=payload
    )
