"""Deduction (扣划) of frozen deposits to the court's case account, with a judge's approval.

The flow proposes an amount (what is frozen, up to what is owed), tells the judge, and pauses for the
decision with Prefect's pause-with-input: the judge approves an amount or rejects with a reason in the
Prefect UI (the Resume form) or with `clerk approve RUN_ID`, proving it with the code the SMS brings (or a
signature: `clerk.lifecycle.proof`). The decision, the judge's name, time and proof go into the audit
trail; the transfer is recorded as a payment. An unanswered approval reminds the judge,
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

from clerk import lifecycle
from clerk.casebook import access, cases
from clerk.lifecycle.decision import Accepted, Verdict, carry_out
from clerk.store import db
from flows import decision as judge
from flows import runtime
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
        return runtime.refused(exc)
    async with runtime.opened(requested_by=requested_by) as rt:
        settings = rt.settings

        try:
            run = rt.ctx.acting(runtime.actor())  # a refusal is the run's to audit
            proposal = await db.run(
                rt.sessions,
                lifecycle.start_deduction,
                run,
                number,
                requested_by,
                settings.access,
                runtime.flow_run_id(),
            )
        except (cases.CaseNotFound, access.Refused) as exc:
            return runtime.refused(exc)
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
            accepted: Accepted | None = await judge.wait_for_decision(rt, proposal)
        except (TimeoutError, FlowPauseTimeout):
            accepted = None
        finally:
            reminder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reminder
        outcome = await carry_out(rt.ctx, proposal, accepted, settings.approval_timeout_s)
        if accepted is None:
            emit_event(event="clerk.deduction.timed-out", resource=resource, payload={})
            return Cancelled(message=outcome.message)
        decision = accepted.decision
        if outcome.approved_fen or not decision.approve:
            await acreate_markdown_artifact(
                judge.outcome_markdown(proposal, decision, outcome.decided_at, outcome.moved),
                key="deduction-result",
                description=f"Deduction {'approved' if decision.approve else 'rejected'} for {number}",
            )
        log.info(outcome.message)
        return (Failed if outcome.verdict is Verdict.FAILED else Completed)(message=outcome.message)
