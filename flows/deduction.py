"""Deduction (扣划) of frozen deposits to the court's case account, with a judge's approval.

The flow proposes an amount (what is frozen, up to what is owed), tells the judge, and pauses for the
decision with Prefect's pause-with-input: the judge approves an amount or rejects with a reason in the
Prefect UI (the Resume form) or with `clerk approve RUN_ID`. The decision, the judge's name and time go
into the audit trail; the transfer is recorded as a payment. An unanswered approval reminds the judge,
then times out cleanly: nothing moves.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from decimal import Decimal

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact
from prefect.client.schemas.objects import State
from prefect.events import emit_event
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.states import Cancelled, Completed, Failed
from pydantic import Field, model_validator

from clerk import control, lifecycle
from clerk.casebook import access, cases
from clerk.store import db
from flows import runtime
from models.access import Action
from models.tables import utcnow
from models.values import CaseNumber, InvalidValue, format_yuan, parse_yuan

PAUSE_MARGIN_S = 120


class DeductionDecision(RunInput):
    """The judge's decision on a proposed deduction."""

    approve: bool = Field(description="Approve the deduction (true) or reject it (false).")
    amount_yuan: Decimal | None = Field(
        None, ge=0, description="Amount approved, in yuan; at most the amount proposed. Empty: all of it."
    )
    judge: str = Field(min_length=1, max_length=100, description="Your name, for the audit trail.")
    reason: str | None = Field(None, max_length=500, description="Why (required when rejecting).")

    @model_validator(mode="after")
    def _reason_for_rejection(self) -> DeductionDecision:
        if not self.approve and not (self.reason or "").strip():
            raise ValueError("reason: a rejection needs a reason")
        return self


def proposal_markdown(proposal: lifecycle.DeductionProposal) -> str:
    lines = [
        f"# Deduction proposed for {proposal.case_number}",
        "",
        f"Owed today: {format_yuan(proposal.remaining_fen)} yuan. "
        f"Proposed: **{format_yuan(proposal.total_fen)} yuan**, to the court's case account.",
        "",
        "| registry | account | amount (yuan) |",
        "|---|---|---|",
        *(
            f"| {line.registry} | {line.account} | {format_yuan(line.amount_fen)} |"
            for line in proposal.lines
        ),
        "",
        "Resume this run to decide: approve (an amount up to the proposal) or reject with a reason.",
    ]
    return "\n".join(lines)


@flow(name="deduction")
async def deduction(case_number: str, requested_by: str) -> State:
    """Propose moving a case's frozen deposits to the court's case account, and wait for the judge.

    Args:
        case_number: The case, e.g. (2024)豫0185执1234号.
        requested_by: Who starts the deduction (required): the case's judge, or a person the settings allow
            at its court. The decision itself must come from the case's judge or a judge or supervisor of
            its court.
    """
    log = get_run_logger()
    try:
        number = str(CaseNumber.parse(case_number))
    except InvalidValue as exc:
        return Failed(message=str(exc))
    async with runtime.opened(requested_by=requested_by) as rt:
        settings = rt.settings

        try:
            proposal = await asyncio.to_thread(
                lifecycle.start_deduction,
                rt.sessions,
                number,
                requested_by,
                settings.access,
                runtime.actor(),
                runtime.today(),
                runtime.flow_run_id(),
            )
        except (cases.CaseNotFound, access.Refused) as exc:
            return Failed(message=str(exc))
        if not proposal.lines:
            return Completed(message=f"{number}: nothing frozen to deduct (or nothing owed)")
        await acreate_markdown_artifact(
            proposal_markdown(proposal),
            key="deduction-proposal",
            description=f"Deduction proposed for {number}",
        )
        resource = {
            "prefect.resource.id": f"query-clerk.case.{proposal.case_id}",
            "prefect.resource.name": number,
        }
        emit_event(
            event="clerk.deduction.awaiting-approval",
            resource=resource,
            payload={"amount_fen": proposal.total_fen},
        )
        await runtime.send_notices(rt)
        log.info("%s: %s yuan proposed; waiting for the judge", number, format_yuan(proposal.total_fen))

        reminder = asyncio.create_task(_remind(rt, proposal, settings.approval_reminder_s))
        try:
            decision = await _decision(rt, proposal)
        except (TimeoutError, FlowPauseTimeout):
            await db.write(rt.sessions, lifecycle.record_timeout, proposal, rt.actor)
            emit_event(event="clerk.deduction.timed-out", resource=resource, payload={})
            return Cancelled(
                message=f"{number}: no decision within {settings.approval_timeout_s} s; nothing moved"
            )
        finally:
            reminder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reminder
        decided_at = utcnow()
        if not decision.approve:
            reason = (decision.reason or "").strip()
            await db.write(
                rt.sessions,
                lifecycle.reject_deduction,
                proposal,
                decision.judge,
                reason,
                rt.actor,
                decided_at,
            )
            return Completed(message=f"{number}: deduction rejected by the judge")
        try:
            approved = (
                proposal.total_fen
                if decision.amount_yuan is None
                else parse_yuan(str(decision.amount_yuan), "amount_yuan")
            )
            action_ids = await db.write(
                rt.sessions,
                lifecycle.approve_deduction,
                proposal,
                approved,
                decision.judge,
                rt.actor,
                decided_at,
            )
        except (ValueError, InvalidValue) as exc:
            return Failed(message=f"{number}: the decision could not be applied: {exc}")
        tally = await control.send_actions(
            rt.sessions, rt.connectors, action_ids, rt.actor, runtime.today(), settings.court_account
        )
        message = (
            f"{number}: {format_yuan(tally.amount_fen)} of {format_yuan(approved)} yuan approved moved "
            f"to the case account ({tally.unconfirmed} transfer(s) unconfirmed, resolved by the collect flow)"
        )
        log.info(message)
        if tally.refused:
            return Failed(message=message + f"; {tally.refused} refused by the bank")
        return Completed(message=message)


async def _decision(rt: runtime.Runtime, proposal: lifecycle.DeductionProposal) -> DeductionDecision:
    """Pause until a person allowed to decide for the case decides; a decision by anyone else is refused
    (audited) and the run pauses again. Our own deadline ends the wait while the run can still leave its
    paused state cleanly: past the server's pause deadline, any new state becomes "Failed: never resumed"."""
    settings = rt.settings
    deadline = time.monotonic() + settings.approval_timeout_s
    for attempt in itertools.count(1):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        decision: DeductionDecision = await asyncio.wait_for(
            pause_flow_run(  # type: ignore[arg-type]  # a coroutine inside an async flow
                wait_for_input=DeductionDecision.with_initial_data(
                    description=proposal_markdown(proposal),  # shown above the UI's Resume form
                    approve=True,
                    amount_yuan=Decimal(proposal.total_fen) / 100,
                    judge="",
                ),
                timeout=int(left) + PAUSE_MARGIN_S,
                poll_interval=settings.approval_poll_s,
                key="deduction-decision" if attempt == 1 else f"deduction-decision-{attempt}",
            ),
            left,
        )
        try:
            await asyncio.to_thread(
                access.authorize_case,
                rt.sessions,
                proposal.case_number,
                decision.judge,
                Action.DECIDE,
                settings.access,
                runtime.actor(),
            )
        except access.Refused as exc:
            get_run_logger().warning("decision refused: %s; waiting again", exc)
            continue
        return decision
    raise AssertionError("unreachable")


async def _remind(rt: runtime.Runtime, proposal: lifecycle.DeductionProposal, after_s: int) -> None:
    await asyncio.sleep(after_s)

    await db.write(rt.sessions, lifecycle.remind_judge, proposal)
    await runtime.send_notices(rt)
