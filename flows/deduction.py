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

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact
from prefect.client.schemas.objects import State
from prefect.events import emit_event
from prefect.exceptions import FlowPauseTimeout
from prefect.states import Cancelled, Completed, Failed

from clerk import control, lifecycle
from clerk.casebook import access, cases
from clerk.store import db
from flows import decision as judge
from flows import runtime
from models.tables import utcnow
from models.values import CaseNumber, InvalidValue, format_yuan


@flow(name="deduction", flow_run_name=runtime.run_name("deduction", "case_number", "requested_by"))
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
            proposal = await db.run(
                rt.sessions,
                lifecycle.start_deduction,
                rt.sessions,
                number,
                requested_by,
                settings.access,
                runtime.actor(),
                rt.ctx.today(),
                runtime.flow_run_id(),
                rt.ctx.policy.exempt,
            )
        except (cases.CaseNotFound, access.Refused) as exc:
            return Failed(message=str(exc))
        if not proposal.lines:
            return Completed(message=f"{number}: nothing frozen to deduct (or nothing owed)")
        await acreate_markdown_artifact(
            judge.proposal_markdown(proposal),
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

        reminder = asyncio.create_task(judge.remind(rt, proposal, settings.approval_reminder_s))
        try:
            decision = await judge.wait_for_decision(rt, proposal)
        except (TimeoutError, FlowPauseTimeout):
            await db.write(rt.sessions, lifecycle.record_timeout, proposal, rt.ctx.actor)
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
            reason = decision.reason.strip()
            await db.write(
                rt.sessions,
                lifecycle.reject_deduction,
                proposal,
                decision.judge,
                reason,
                rt.ctx.actor,
                decided_at,
            )
            await acreate_markdown_artifact(
                judge.outcome_markdown(proposal, decision, decided_at),
                key="deduction-result",
                description=f"Deduction rejected for {number}",
            )
            return Completed(message=f"{number}: deduction rejected by {decision.judge}: {reason}")
        try:
            approved = decision.approved_fen(proposal.total_fen)
            action_ids = await db.write(
                rt.sessions,
                lifecycle.approve_deduction,
                proposal,
                approved,
                decision.judge,
                rt.ctx.actor,
                decided_at,
            )
        except (ValueError, InvalidValue) as exc:
            return Failed(message=f"{number}: the decision could not be applied: {exc}")
        tally = await control.send_actions(rt.ctx, action_ids)
        moved = await db.read(rt.sessions, lifecycle.deduction_outcome, action_ids)
        await acreate_markdown_artifact(
            judge.outcome_markdown(proposal, decision, decided_at, moved),
            key="deduction-result",
            description=f"Deduction approved for {number}",
        )
        message = (
            f"{number}: {format_yuan(tally.amount_fen)} of {format_yuan(approved)} yuan approved moved "
            f"to the case account ({tally.unconfirmed} transfer(s) unconfirmed, resolved by the collect flow)"
        )
        log.info(message)
        if tally.refused:
            return Failed(message=message + f"; {tally.refused} refused by the bank")
        return Completed(message=message)
