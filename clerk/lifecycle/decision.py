"""A judge's decision on money that would move: who may decide, an amount within what was proposed, a
reason to reject, proof that the person named made it (`clerk.lifecycle.proof`), and what follows each
verdict (approved: written down and sent; rejected or no decision
in time: nothing moves), each on the audit trail. The deduction flow keeps Prefect's part (the pause, the
Resume form, the artifacts) and calls this; a payout's approval takes the same step.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from clerk import control
from clerk.casebook import access
from clerk.context import Context
from clerk.lifecycle import proof
from clerk.lifecycle.deduction import (
    DeductionProposal,
    Moved,
    approve_deduction,
    deduction_outcome,
    record_timeout,
    reject_deduction,
)
from clerk.store import db
from models.access import Action, Person
from models.proof import Binding
from models.values import InvalidValue, format_yuan


@dataclass(frozen=True, slots=True)
class Decision:
    """What a person decided: approve `amount_fen` (None: all that was proposed), or reject with a reason;
    with the proof that came with it (a code or a signature)."""

    judge: str
    approve: bool
    amount_fen: int | None = None
    reason: str = ""
    offered: proof.Offered = field(default_factory=proof.Offered)


@dataclass(frozen=True, slots=True)
class Accepted:
    """A decision the rules take: allowed, within the proposal, proven (`proved`: None where the settings
    ask no proof)."""

    decision: Decision
    proved: proof.Proved | None = None


class Verdict(StrEnum):
    APPROVED = "approved"  # written down and sent (some transfers may still be unconfirmed)
    REJECTED = "rejected"
    TIMED_OUT = "timed out"
    FAILED = "failed"  # the decision could not be applied, or the bank refused a transfer


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    message: str
    decided_at: dt.datetime
    approved_fen: int = 0
    moved: Sequence[Moved] = ()


def refusal(
    ctx: Context,
    proposal: DeductionProposal,
    decision: Decision,
    people: Mapping[str, Person],
) -> str | None:
    """Why the rules refuse this decision, or None: a person who may not decide for the case (refused and
    audited: `access.authorize_case`), an amount above the proposal, a rejection without a reason."""
    try:
        access.authorize_case(
            ctx.sessions, proposal.case_number, decision.judge, Action.DECIDE, people, ctx.actor
        )
    except access.Refused as exc:
        return str(exc)
    if decision.approve and (decision.amount_fen or 0) > proposal.total_fen:
        return (
            f"amount_yuan: {format_yuan(decision.amount_fen or 0)} is more than the "
            f"{format_yuan(proposal.total_fen)} yuan proposed"
        )
    if not decision.approve and not decision.reason.strip():
        return "reason: a rejection needs a reason"
    return None


def binding(proposal: DeductionProposal, decision: Decision, run: str) -> Binding:
    """What a proof of this decision must be bound to: the run, the case, the person, the verdict and the
    amount it moves (all that was proposed when it names none)."""
    return Binding.of(
        run, proposal.case_number, decision.judge, decision.approve, decision.amount_fen, proposal.total_fen
    )


async def weigh(
    ctx: Context,
    proposal: DeductionProposal,
    decision: Decision,
    people: Mapping[str, Person],
    prover: proof.Prover,
    run: str,
) -> Accepted | str:
    """The decision as the rules take it, or why they refuse it (each refusal audited): who may decide,
    the amount, a rejection's reason (`refusal`), then proof that the person named made it (`proof.prove`:
    a decision without proof has a code sent). `run` names the decision that waits (the paused run)."""
    why = await db.run(ctx.sessions, refusal, ctx, proposal, decision, people)
    if why is not None:
        return why
    if not prover.required:
        return Accepted(decision)
    bound = binding(proposal, decision, run)
    proved = await proof.prove(ctx, prover, bound, decision.offered, people, proposal.case_id, proposal.judge)
    return proved if isinstance(proved, str) else Accepted(decision, proved)


async def carry_out(
    ctx: Context, proposal: DeductionProposal, accepted: Accepted | None, waited_s: int
) -> Outcome:
    """What follows the decision (None: none came within `waited_s`), on the audit trail with who decided,
    when and how it was proven (its code spent in the same transaction):
    an approval is written down as deductions and sent (`control.send_actions`), each transfer recorded as a
    payment; a rejection or no decision moves nothing."""
    number, decided_at = proposal.case_number, ctx.now()
    if accepted is None:
        await db.write(ctx.sessions, record_timeout, proposal, ctx.actor)
        return Outcome(
            Verdict.TIMED_OUT, f"{number}: no decision within {waited_s} s; nothing moved", decided_at
        )
    decision, proved = accepted.decision, accepted.proved
    if not decision.approve:
        reason = decision.reason.strip()
        try:
            await db.write(
                ctx.sessions,
                reject_deduction,
                proposal,
                decision.judge,
                reason,
                ctx.actor,
                decided_at,
                proved,
            )
        except proof.CodeSpent as exc:
            return Outcome(Verdict.FAILED, f"{number}: the decision could not be applied: {exc}", decided_at)
        return Outcome(
            Verdict.REJECTED, f"{number}: deduction rejected by {decision.judge}: {reason}", decided_at
        )
    approved = proposal.total_fen if decision.amount_fen is None else decision.amount_fen
    try:
        action_ids = await db.write(
            ctx.sessions, approve_deduction, proposal, approved, decision.judge, ctx.actor, decided_at, proved
        )
    except (ValueError, InvalidValue) as exc:
        return Outcome(Verdict.FAILED, f"{number}: the decision could not be applied: {exc}", decided_at)
    counts = await control.send_actions(ctx, action_ids)
    moved = await db.read(ctx.sessions, deduction_outcome, action_ids)
    message = (
        f"{number}: {format_yuan(counts.amount_fen)} of {format_yuan(approved)} yuan approved moved "
        f"to the case account ({counts.unconfirmed} transfer(s) unconfirmed, resolved by the collect flow)"
    )
    if counts.refused:
        failed = message + f"; {counts.refused} refused by the bank"
        return Outcome(Verdict.FAILED, failed, decided_at, approved, moved)
    return Outcome(Verdict.APPROVED, message, decided_at, approved, moved)
