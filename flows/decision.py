"""A judge's decision on a deduction, as the deduction flow waits for it: the Resume form's input
(`DeductionDecision`), the proposal shown above it, the pause that waits (`wait_for_decision`: a decision by
anyone the case's rules do not allow, or without proof that the person named made it, is refused, audited,
and the run pauses again, the form filled as it was so that only the code is left to type) and the
reminder."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import time
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Annotated, Any, Literal

from prefect import get_run_logger
from prefect.artifacts import acreate_markdown_artifact
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import ConfigDict, Field, ValidationError, WithJsonSchema, create_model
from pydantic.config import JsonDict

from clerk import lifecycle
from clerk.lifecycle.decision import Accepted, Decision, weigh
from clerk.lifecycle.proof import Offered, Prover
from clerk.store import db
from flows import runtime
from models.status import ActionStatus
from models.supervision import CHINA
from models.values import InvalidValue, format_yuan, parse_yuan

PAUSE_MARGIN_S = 120


#: A rejection needs a reason (the rule is `clerk.lifecycle.decision.refusal`'s): in the form's schema too, so
#: that the server refuses a rejection without one where it is made (the Resume form, `clerk approve`), not
#: after the run resumed.
_REASON_TO_REJECT: JsonDict = {
    "if": {"properties": {"decision": {"const": "reject"}}, "required": ["decision"]},
    "then": {"required": ["reason"], "properties": {"reason": {"type": "string", "pattern": "\\S"}}},
    # Required even when the form is filled again as it was (a default each): the UI marks them so.
    "required": ["decision", "judge"],
}


class DeductionDecision(RunInput):
    """The judge's decision on a proposed deduction (the Resume form; `decision_form` sets the amount's
    ceiling to the proposal)."""

    model_config = ConfigDict(json_schema_extra=_REASON_TO_REJECT)

    decision: Literal["approve", "reject"] = Field(
        title="Decision",
        description="approve: the amount below moves to the court's case account. reject: nothing moves "
        "(a reason is required).",
    )
    judge: str = Field(
        min_length=1,
        max_length=100,
        pattern=r"\S",
        title="Judge",
        description="Your name as the case book writes it: the case's judge, or a judge or supervisor of its "
        "court (settings CLERK_PEOPLE). A decision by anyone else is refused and the run waits again.",
    )
    # A JSON number, read as yuan with at most two decimals (`approved_fen`); `decision_form` sets its default
    # and ceiling to the proposal.
    amount_yuan: float | None = Field(None, gt=0, title="Amount (yuan)")
    reason: str = Field(
        "", max_length=500, title="Reason", description="Why; required to reject, kept in the audit trail."
    )
    code: str = Field(
        "",
        max_length=20,
        title="Code",
        description="The 6-digit code the SMS sent to your phone for this decision and amount. Empty: one is "
        "sent, and the run asks again with the form as you filled it. Good once, for a few minutes.",
    )
    signature: str = Field(
        "",
        max_length=200,
        title="Signature",
        description="Filled by `clerk approve --key FILE` (your own key); leave it empty here.",
    )

    @property
    def approve(self) -> bool:
        return self.decision == "approve"

    def as_decision(self) -> Decision:
        """The decision as the use case takes it (`clerk.lifecycle.decision`): the amount in fen (none given:
        the proposal); InvalidValue for an amount with more than two decimals."""
        amount = (
            None
            if self.amount_yuan is None or not self.approve
            else parse_yuan(repr(self.amount_yuan), "amount_yuan", allow_zero=False)
        )
        return Decision(self.judge, self.approve, amount, self.reason, Offered(self.code, self.signature))


def decision_form(
    proposal: lifecycle.DeductionProposal,
    refusal: str | None = None,
    last: DeductionDecision | None = None,
) -> type[DeductionDecision]:
    """The Resume form for this proposal: the amount in yuan a number field, the proposal by default and at
    most (not a nullable field: the UI would show a type toggle), and above the form the proposal, after
    the reason the last decision was refused, if it was. After a refusal the form is filled as `last` was
    (all but its code and signature)."""
    most = float(Decimal(proposal.total_fen) / 100)  # exact: a float keeps 15 digits, fen amounts fewer
    amount = min(last.amount_yuan or most, most) if last is not None else most
    schema = {"type": "number", "exclusiveMinimum": 0, "maximum": most, "default": amount}
    filled: dict[str, Any] = {}
    if last is not None:  # the same field (its title, description, constraints), its default what was given
        for name in ("decision", "judge", "reason"):
            info = DeductionDecision.model_fields[name]
            filled[name] = (Annotated[info.annotation, info], getattr(last, name))
    form = create_model(
        "DeductionDecision",
        __base__=DeductionDecision,
        amount_yuan=(
            Annotated[float, WithJsonSchema(schema)],
            Field(
                amount,
                gt=0,
                le=most,
                title="Amount (yuan)",
                description=f"At most the {format_yuan(proposal.total_fen)} yuan proposed (the default). "
                "Not used when rejecting.",
            ),
        ),
        **filled,
    )
    shown = proposal_markdown(proposal)
    if refusal:
        shown = f"**The last decision was refused: {refusal}.** The run waits for a new one.\n\n{shown}"
    form._description = shown
    return form


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
        "Decide with the Resume button (or `clerk approve RUN_ID`): approve an amount up to the proposal, or "
        "reject with a reason.",
    ]
    return "\n".join(lines)


def outcome_markdown(
    proposal: lifecycle.DeductionProposal,
    decision: Decision,
    decided_at: dt.datetime,
    moved: Sequence[lifecycle.Moved] = (),
) -> str:
    """The decision and what it did, after the proposal (the `deduction-result` artifact)."""
    when = decided_at.astimezone(CHINA).strftime("%Y-%m-%d %H:%M")
    if not decision.approve:
        return (
            f"# Deduction rejected for {proposal.case_number}\n\nRejected by {decision.judge} at {when} "
            f"(Beijing time): {decision.reason.strip()}\n\nNothing moved; the freezes stay."
        )
    done = sum(m.amount_fen for m in moved if m.status == ActionStatus.DONE)
    words = {ActionStatus.DONE: "moved", ActionStatus.FAILED: "refused by the bank"}
    lines = [
        f"# Deduction approved for {proposal.case_number}",
        "",
        f"Approved by {decision.judge} at {when} (Beijing time): "
        f"{format_yuan(sum(m.amount_fen for m in moved))} of the {format_yuan(proposal.total_fen)} yuan "
        f"proposed. **{format_yuan(done)} yuan moved** to the court's case account.",
        "",
        "| bank | account | amount (yuan) | result |",
        "|---|---|---:|---|",
        *(
            f"| {m.registry} | {m.account} | {format_yuan(m.amount_fen)} | "
            f"{words.get(ActionStatus(m.status), 'awaiting the bank (the collect flow settles it)')} |"
            for m in moved
        ),
    ]
    return "\n".join(lines)


async def wait_for_decision(rt: runtime.Runtime, proposal: lifecycle.DeductionProposal) -> Accepted:
    """Pause until a person allowed to decide for the case decides within the proposal and proves it is
    theirs. A decision the rules refuse (`clerk.lifecycle.decision.weigh`: anyone else's, an amount above
    the proposal, no proof or a wrong one; each audited) is shown where it was made (above the form, and as
    the `deduction-refusal` artifact, which `clerk approve` reads) and the run pauses again. The input
    given is deleted from the server once read: a code stays nowhere. Our own deadline ends the wait while
    the run can still leave its paused state cleanly: past the server's pause deadline, any new state
    becomes "Failed: never resumed"."""
    settings = rt.settings
    deadline = time.monotonic() + settings.approval_timeout_s
    refused: str | None = None
    last: DeductionDecision | None = None
    prover = Prover.of(settings, rt.notifier)
    run = runtime.flow_run_id()
    if run is None:
        raise RuntimeError("a decision is waited for inside a flow run")
    for attempt in itertools.count(1):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        key = "deduction-decision" if attempt == 1 else f"deduction-decision-{attempt}"
        try:
            try:
                form: DeductionDecision = await asyncio.wait_for(
                    pause_flow_run(  # type: ignore[arg-type]  # a coroutine inside an async flow
                        wait_for_input=decision_form(proposal, refused, last),
                        timeout=int(left) + PAUSE_MARGIN_S,
                        poll_interval=settings.approval_poll_s,
                        key=key,
                    ),
                    left,
                )
            finally:
                await _forget_input(run, key)
            last = form
            decision = form.as_decision()
        except ValidationError as exc:  # the server checked the schema; this is what it cannot check
            refused = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        except InvalidValue as exc:
            refused = str(exc)
        else:
            ctx = rt.ctx.acting(runtime.actor())  # a refusal is the run's to audit, not the requester's
            weighed = await weigh(ctx, proposal, decision, settings.access, prover, run)
            if isinstance(weighed, Accepted):
                return weighed
            refused = weighed
        get_run_logger().warning("decision refused: %s; waiting again", refused)
        await acreate_markdown_artifact(
            f"# Decision refused\n\n{refused}.\n\nThe run waits for a new decision.",
            key="deduction-refusal",
            description=f"Decision refused: {refused}",
        )
    raise AssertionError("unreachable")


async def _forget_input(run: str, key: str) -> None:
    """Delete the decision given to `run` under pause `key` from the Prefect server (it may hold a code)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import PrefectHTTPStatusError
    from prefect.input import keyset_from_base_key

    async with get_client() as client:
        try:
            await client.delete_flow_run_input(
                uuid.UUID(run), keyset_from_base_key(f"paused-{key}")["response"]
            )
        except PrefectHTTPStatusError as exc:  # 404: nothing was given under this key
            if exc.response.status_code != 404:
                raise


async def remind(rt: runtime.Runtime, proposal: lifecycle.DeductionProposal, after_s: int) -> None:
    await asyncio.sleep(after_s)

    await db.write(rt.sessions, lifecycle.remind_judge, proposal)
    await runtime.send_notices(rt)
