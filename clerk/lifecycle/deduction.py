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
from sqlalchemy.orm import Session, sessionmaker

from clerk import control
from clerk.casebook import access, cases, notices
from clerk.store import audit, locks
from models import rules
from models.access import Action, Person
from models.exemptions import NO_EXEMPTIONS, Exemptions, deductible
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


def propose_deduction(
    session: Session, case_number: str, today: dt.date, exempt: Exemptions = NO_EXEMPTIONS
) -> DeductionProposal:
    """What could move to the court's case account today: frozen deposits, oldest freeze first, up to what
    the case owes, and never what the law leaves with the debtor (models.exemptions, checked again today):
    a protected account's money stays unless a judge overrode that for the case, and a natural person keeps
    the living allowance across all of the person's deposits."""
    case = cases.get_case(session, case_number)
    exempt = exempt.for_case(
        allowance_overridden=case.override_allowance, protected_overridden=case.override_protected
    )
    rows = session.execute(
        select(ControlMeasure, Asset.identifier, Asset.purpose, Asset.debtor_id, Registry.code)
        .join(Asset, Asset.id == ControlMeasure.asset_id)
        .join(Registry, Registry.id == ControlMeasure.registry_id)
        .where(
            ControlMeasure.case_id == case.id,
            ControlMeasure.kind == "freeze",
            ControlMeasure.status == MeasureStatus.EFFECTIVE,
            ControlMeasure.actual_amount_fen > 0,
            ControlMeasure.registry_reference.is_not(None),
        )
    ).all()
    remaining = cases.owed(case, today).remaining
    protected = [m for m, _, purpose, _, _ in rows if exempt.protects("deposit", purpose)]
    frozen = [
        rules.Covered(m.id, m.actual_amount_fen or 0, m.started_on or today)
        for m, _, purpose, _, _ in rows
        if not exempt.protects("deposit", purpose)
    ]
    # The allowance first, then what is owed: what one person must keep, another's freeze may still cover.
    allowed = _within_allowances(
        session, case, frozen, {m.id: debtor for m, _, _, debtor, _ in rows}, exempt, today
    )
    proposed = rules.propose_deduction(remaining, allowed)
    info = {m.id: (code, mask_account(identifier)) for m, identifier, _, _, code in rows}
    lines = tuple(ProposedDeduction(a.key, info[a.key][0], info[a.key][1], a.amount) for a in proposed)
    without_allowance = rules.propose_deduction(remaining, frozen)
    kept = sum(a.amount for a in without_allowance) - sum(a.amount for a in proposed)
    return DeductionProposal(case.id, case.case_number, case.judge, remaining, lines, kept, len(protected))


def _within_allowances(
    session: Session,
    case: Case,
    frozen: list[rules.Covered],
    debtor_of: Mapping[int, int],
    exempt: Exemptions,
    today: dt.date,
) -> list[rules.Covered]:
    """The case's freezes with what may move from each once every natural person keeps the living
    allowance: per person, at most the person's deposits (last reported balances, less other authorities'
    measures; protected accounts left out, as the freeze leaves them) less the allowance and less what they
    hold for our other cases (exemptions.deductible),
    taken oldest freeze first, as the proposal takes them."""
    debtors = {debtor_of[f.key] for f in frozen}
    people = {
        d.id: d.dependants
        for d in session.scalars(select(Debtor).where(Debtor.id.in_(debtors), Debtor.kind == "person"))
    }
    if not people or exempt.months <= 0:
        return frozen
    # What each person's deposits hold that no other authority holds, counted as the freeze counts them
    # (control.planning): a protected account's balance is no part of it, unless a judge overrode that (a
    # large wage account must not hide that the person's own deposits are under the allowance).
    balances: dict[int, int] = {}
    for asset in session.scalars(select(Asset).where(Asset.debtor_id.in_(people), Asset.kind == "deposit")):
        if not exempt.protects(asset.kind, asset.purpose):
            balances[asset.debtor_id] = balances.get(asset.debtor_id, 0) + control.cap.available(asset, 0)
    elsewhere: dict[int, int] = {}  # what our freezes for other cases hold on those same deposits
    for debtor, kind, purpose, total in session.execute(
        select(
            Asset.debtor_id,
            Asset.kind,
            Asset.purpose,
            func.coalesce(func.sum(ControlMeasure.actual_amount_fen), 0),
        )
        .join(ControlMeasure, ControlMeasure.asset_id == Asset.id)
        .where(
            Asset.debtor_id.in_(people),
            ControlMeasure.case_id != case.id,
            ControlMeasure.kind == "freeze",
            ControlMeasure.status == MeasureStatus.EFFECTIVE,
        )
        .group_by(Asset.debtor_id, Asset.kind, Asset.purpose)
    ):
        if not exempt.protects(kind, purpose):
            elsewhere[debtor] = elsewhere.get(debtor, 0) + total
    oldest_first = sorted(frozen, key=lambda f: (f.placed_on, f.key))
    allowed: dict[int, int] = {}
    for debtor_id, dependants in people.items():
        mine = [rules.Holding(f.key, f.amount) for f in oldest_first if debtor_of[f.key] == debtor_id]
        allowance = exempt.allowance(case.court_code, today, dependants)
        for h in deductible(mine, balances.get(debtor_id, 0), allowance, elsewhere.get(debtor_id, 0)):
            allowed[h.key] = h.available
    return [rules.Covered(f.key, allowed.get(f.key, f.amount), f.placed_on) for f in frozen]


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
    locks.lock_case(session, proposal.case_id)  # deductions change what the case owes
    allocations = rules.split_approved(
        approved_fen, [rules.Allocation(line.measure_id, line.amount_fen) for line in proposal.lines]
    )
    _decided(session, proposal, "approved", judge, actor, decided_at, approved_fen=approved_fen)
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
) -> None:
    _decided(session, proposal, "rejected", judge, actor, decided_at, reason=reason)


def _decided(
    session: Session,
    proposal: DeductionProposal,
    verdict: str,
    judge: str,
    actor: str,
    decided_at: dt.datetime,
    **detail: object,
) -> None:
    """A judge's decision on the record: who, when, on how much, and the verdict's own detail."""
    payload = {
        "judge": judge,
        "decided_at": decided_at.isoformat(),
        **detail,
        "proposed_fen": proposal.total_fen,
    }
    audit.append(
        session, f"deduction.{verdict}", actor=actor, case_number=proposal.case_number, payload=payload
    )


def start_deduction(
    sessions: sessionmaker[Session],
    case_number: str,
    requested_by: str,
    people: Mapping[str, Person],
    operator: str,
    today: dt.date,
    flow_run_id: str | None,
    exempt: Exemptions = NO_EXEMPTIONS,
) -> DeductionProposal:
    """Check who asks (`access.authorize_case`: a refusal is audited and raised), propose what could move
    today, and, when anything could, tell the case's judge that a decision is awaited."""
    access.authorize_case(sessions, case_number, requested_by, Action.QUERY, people, operator)
    with sessions.begin() as session:
        proposal = propose_deduction(session, case_number, today, exempt)
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
