"""A deduction (扣划) as a judge runs it: `clerk deduct` starts one on the served deployment and shows what it
proposes, `clerk approve` decides on it. Both talk to the Prefect server that runs it (`clerk serve`, or
PREFECT_API_URL's) through its REST API with httpx alone, as `clerk query` does: no Prefect, no case book
here, so each answers in the time the run takes. Who may ask is the run's to decide (and audit): a refusal
ends it Refused, exit 2 here. What the run's form takes (the most it may approve, the case) is read from
the paused run itself; a code or a signature proves the decision (`models.proof`).
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from cli import served
from cli.console import err, light_errors, out
from cli.options import RequestedByOption
from models import proof
from models.values import CaseNumber, InvalidValue, format_yuan, parse_yuan


def deduct(
    case_number: Annotated[str, typer.Argument(help="The case whose frozen deposits are to be deducted.")],
    requested_by: RequestedByOption,
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for the proposal (the run pausing for a decision).", min=1)
    ] = 60,
) -> None:
    """Start a deduction (扣划) on the served `deduction` deployment and show what it proposes, once it waits
    for the judge's decision (`clerk approve RUN_ID`, or the Resume button in the Prefect UI). Exit 2 when
    the run refuses the case or the person (audited), 1 when it fails or does not pause in time."""
    with light_errors():
        _deduct(str(CaseNumber.parse(case_number)), requested_by, wait)


def _deduct(number: str, requested_by: str, wait: float) -> None:
    url = served.server_url()
    with served.Api(url) as api:
        try:
            deployment = api.served(served.DEDUCTION)
        except served.ServerError:
            deployment = None  # a named server that does not answer
        if not api.answered:
            raise InvalidValue(
                "PREFECT_API_URL",
                f"no Prefect server answers at {url}: a deduction waits for a judge on one; start `clerk "
                "serve` (or name a server in PREFECT_API_URL) first",
            )
        if deployment is None:
            raise InvalidValue(
                "PREFECT_API_URL",
                f"nothing serves the {served.DEDUCTION} deployment at {url}: start `clerk serve`",
            )
        run = api.start(deployment, {"case_number": number, "requested_by": requested_by})
        out.print(f"deduction for {number}: flow run {run}")
        out.print(f"  {api.ui_link(run)}")
        reached = api.follow(run, wait, "the deduction has not proposed", until=served.FINAL | {"PAUSED"})
        if reached.state != "PAUSED":
            if not reached.completed:
                err.print(f"error: the deduction failed: {reached.message or reached.name}")
                raise typer.Exit(1)
            out.print(reached.message)  # nothing to deduct
            return
        proposal = api.latest_artifact(run, "deduction-proposal")
        if proposal and proposal.get("description"):
            out.print(str(proposal["description"]))
        out.print(f"decide with: clerk approve {run} --judge NAME [--amount YUAN | --reject --reason TEXT]")


def approve(
    flow_run_id: Annotated[str, typer.Argument(help="The paused deduction run (printed by `clerk deduct`).")],
    judge: Annotated[
        str,
        typer.Option(
            help="Your name as the case book writes it: the case's judge, or a judge or supervisor of its "
            "court (CLERK_PEOPLE)."
        ),
    ],
    amount: Annotated[
        str | None, typer.Option(help="Yuan to approve, at most the amount proposed; default all of it.")
    ] = None,
    reject: Annotated[bool, typer.Option("--reject", help="Reject the deduction (needs --reason).")] = False,
    reason: Annotated[str | None, typer.Option(help="Why (required with --reject).")] = None,
    code: Annotated[
        str | None,
        typer.Option(
            help="The code the SMS sent to your phone for this decision. Without it (and without --key) a "
            "code is sent, and asked for here on a terminal."
        ),
    ] = None,
    key: Annotated[
        Path | None,
        typer.Option(
            help="Sign the decision with your own Ed25519 key (a PEM file; its public half registered in "
            "CLERK_PEOPLE) instead of a code.",
            dir_okay=False,
        ),
    ] = None,
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for the run to accept or refuse the decision.", min=0)
    ] = 60,
) -> None:
    """A judge's decision on a paused deduction: approve an amount, or reject with a reason, proven with
    the code sent to your phone (or your key). Waits for the run's answer: exit 0 once it is taken (with
    what moved), 1 when the run refuses it (the reason is printed; the run waits for a new decision) or
    the deduction fails."""
    with light_errors():
        _approve(flow_run_id, judge, amount, reject, reason, code, key, wait)


def _approve(
    flow_run_id: str,
    judge: str,
    amount: str | None,
    reject: bool,
    reason: str | None,
    code: str | None,
    key: Path | None,
    wait: float,
) -> None:
    try:
        run_id = str(uuid.UUID(flow_run_id))
    except ValueError:
        raise InvalidValue("flow_run_id", f"{flow_run_id!r} is not a flow run id (a UUID)") from None
    if reject and not (reason or "").strip():
        raise InvalidValue("--reason", "a rejection needs a reason")
    if reject and amount is not None:
        raise InvalidValue("--amount", "give an amount to approve, or --reject, not both")
    if code is not None and key is not None:
        raise InvalidValue("--code", "give a code or --key, not both")
    typed = proof.parse_code(code, "--code") if code is not None else None
    signer = proof.private_key(_read_key(key), "--key") if key is not None else None
    asked = parse_yuan(amount, "--amount", allow_zero=False) if amount is not None else None
    with served.Api(served.server_url()) as api:
        run = api.flow_run(run_id)
        if run is None:
            raise InvalidValue("flow_run_id", f"no flow run {run_id} on the Prefect server at {api.url}")
        paused = _paused(api, run)
        most = paused.most_fen
        if asked is not None and asked > most:
            raise InvalidValue(
                "--amount", f"{format_yuan(asked)} yuan is more than the {format_yuan(most)} yuan proposed"
            )
        decision: dict[str, object] = {"decision": "reject" if reject else "approve", "judge": judge}
        if reason is not None:
            decision["reason"] = reason
        if asked is not None:  # a JSON number: the form's schema says so
            decision["amount_yuan"] = asked / 100
        if typed is not None:
            decision["code"] = typed
        if signer is not None:
            bound = proof.Binding.of(run_id, paused.case_number, judge, not reject, asked, most)
            decision["signature"] = proof.sign(signer, bound)
        taken, message = _decide(api, run_id, decision, paused.pause_key, wait)
        if not taken and message.startswith(f"refused: {proof.CODE_SENT}") and _terminal():
            out.print(message)
            decision["code"] = proof.parse_code(typer.prompt("code from the SMS", hide_input=True), "code")
            taken, message = _decide(api, run_id, decision, _pause_key(api.flow_run(run_id)), wait)
    (out if taken else err).print(message)
    if not taken:
        raise typer.Exit(1)


@dataclass(frozen=True, slots=True)
class _Paused:
    case_number: str
    pause_key: str
    most_fen: int  # the proposal: the most the form takes


def _paused(api: served.Api, run: dict[str, Any]) -> _Paused:
    """What a run waiting for a decision asks for (its form's schema); InvalidValue when it waits for none."""
    state = run.get("state") or {}
    details = state.get("state_details") or {}
    keyset = details.get("run_input_keyset") or {}
    schema = api.run_input(run["id"], keyset["schema"]) if state.get("type") == "PAUSED" and keyset else None
    if schema is None:
        raise InvalidValue(
            "flow_run_id", f"the run is {state.get('name') or 'not started'}, not waiting for a decision"
        )
    most = schema["properties"]["amount_yuan"]["maximum"]
    case_number = str(CaseNumber.parse(str((run.get("parameters") or {}).get("case_number", ""))))
    return _Paused(case_number, _pause_key(run), parse_yuan(repr(most), "amount_yuan"))


def _pause_key(run: dict[str, Any] | None) -> str:
    """Which pause the run is in (a new one after each refused decision)."""
    return str((((run or {}).get("state") or {}).get("state_details") or {}).get("pause_key"))


def _read_key(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidValue("--key", f"cannot read {path}: {type(exc).__name__}") from None


def _terminal() -> bool:
    return sys.stdin.isatty() and os.environ.get("CI") != "true"


def _decide(
    api: served.Api, run_id: str, decision: dict[str, object], paused_at: str, wait: float
) -> tuple[bool, str]:
    """Resume the run with `decision` and wait for its answer: it ends (its message), or pauses again for a
    new decision (refused: the reason from its `deduction-refusal` artifact)."""
    refused = api.resume(run_id, decision)
    if refused is not None:
        return False, f"refused before it reached the run: {refused}"
    out.print(f"decision sent: {decision['decision']} by {decision['judge']}; waiting for the run")
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        run = api.flow_run(run_id)
        state = (run or {}).get("state") or {}
        if state.get("type") in served.FINAL:
            return state.get("type") == "COMPLETED", f"{state.get('name')}: {state.get('message') or ''}"
        if state.get("type") == "PAUSED" and _pause_key(run) != paused_at:
            found = api.latest_artifact(run_id, "deduction-refusal")
            why = str(found.get("description") or "") if found else ""
            why = why.removeprefix("Decision refused: ") or "see the Prefect UI"
            return False, f"refused: {why}; the run waits for a new decision"
        time.sleep(0.1)
    return False, f"the run has not answered within {wait:g} s; it goes on: see {api.ui_link(run_id)}"
