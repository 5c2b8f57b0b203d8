"""A judge's decision on a deduction, as the deduction flow waits for it: the Resume form's input
(`DeductionDecision`), the proposal shown above it, the pause that waits (`wait_for_decision`: a decision by
anyone the case's rules do not allow is refused, audited, and the run pauses again) and the reminder."""

from __future__ import annotations

import asyncio
import itertools
import time
from decimal import Decimal

from prefect import get_run_logger
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import Field, model_validator

from clerk import lifecycle
from clerk.casebook import access
from clerk.store import db
from flows import runtime
from models.access import Action
from models.values import format_yuan

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
        *(
            [
                "Left with the debtor as the living allowance: "
                f"{format_yuan(proposal.allowance_kept_fen)} yuan."
            ]
            if proposal.allowance_kept_fen
            else []
        ),
        *(
            [f"Not deducted: {proposal.protected_left} frozen account(s) whose purpose the law protects."]
            if proposal.protected_left
            else []
        ),
        "",
        "Resume this run to decide: approve (an amount up to the proposal) or reject with a reason.",
    ]
    return "\n".join(lines)


async def wait_for_decision(rt: runtime.Runtime, proposal: lifecycle.DeductionProposal) -> DeductionDecision:
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


async def remind(rt: runtime.Runtime, proposal: lifecycle.DeductionProposal, after_s: int) -> None:
    await asyncio.sleep(after_s)

    await db.write(rt.sessions, lifecycle.remind_judge, proposal)
    await runtime.send_notices(rt)
