"""What a judge runs: `clerk query` (a case query now), `clerk run` (any flow once), `clerk deduct` and
`clerk approve`."""

from __future__ import annotations

import os
from typing import Annotated, Any, cast

import typer

from cli import served
from cli.common import (
    RequestedByOption,
    app,
    check_access,
    err,
    friendly_errors,
    out,
)
from cli.query import query
from deployments import catalog
from models.access import Action
from models.values import CaseNumber, InvalidValue, parse_yuan

app.command("query")(query)


FLOWS = catalog.SCHEDULED


@app.command("run")
@friendly_errors
def run_flow(
    name: Annotated[str, typer.Argument(help=f"One of: {', '.join(FLOWS)}.")],
) -> None:
    """Run one of the scheduled flows once, now, in this process (without a server: Prefect starts a
    temporary one, about 10 s). `clerk serve` runs them all on their schedules."""
    if name not in FLOWS:
        raise InvalidValue("name", f"{name!r} is not a flow: use one of {', '.join(FLOWS)}")
    from flows import runtime

    flow = catalog.BY_NAME[name].flow()
    state = runtime.run(flow(return_state=True), name)
    (out if state.is_completed() else err).print(f"{name}: {state.name}: {state.message or ''}")
    if not state.is_completed():
        raise typer.Exit(1)


def _api_url(deployment: str | None = None) -> str:
    """The running Prefect server's API (PREFECT_API_URL's, or `clerk serve`'s on this machine), made the one
    this process's Prefect client talks to; with `deployment`, one that serves it. InvalidValue naming what
    to start otherwise."""
    from prefect.settings import PREFECT_API_URL  # a profile's, or a test harness's

    url = str(os.environ.get("PREFECT_API_URL") or PREFECT_API_URL.value() or served.server_url())
    with served.Api(url) as api:
        try:
            found = api.served(deployment or served.CASE_QUERY)
        except served.ServerError:
            found = None  # a named server that does not answer
        if not api.answered:
            raise InvalidValue(
                "PREFECT_API_URL",
                f"no Prefect server answers at {url}: a deduction waits for a judge on one; start `clerk "
                "serve` (or name a server in PREFECT_API_URL) first",
            )
        if deployment and found is None:
            raise InvalidValue(
                "PREFECT_API_URL", f"nothing serves the {deployment} deployment at {url}: start `clerk serve`"
            )
    os.environ["PREFECT_API_URL"] = url
    return url


@app.command("deduct")
@friendly_errors
def deduct(
    case_number: Annotated[str, typer.Argument(help="The case whose frozen deposits are to be deducted.")],
    requested_by: RequestedByOption,
) -> None:
    """Start a deduction (扣划) on the served `deduction` deployment: it proposes an amount and waits for the
    judge's decision (`clerk approve RUN_ID` or the Resume button in the Prefect UI)."""
    number = str(CaseNumber.parse(case_number))
    check_access(number, requested_by, Action.QUERY)
    api = _api_url("deduction/deduction")
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment

    run = cast(
        FlowRun,
        run_deployment(
            "deduction/deduction",
            parameters={"case_number": number, "requested_by": requested_by},
            timeout=0,
        ),
    )
    out.print(f"deduction started for {number}: flow run {run.id}")
    out.print(f"decide with: clerk approve {run.id} --judge NAME [--amount YUAN | --reject --reason TEXT]")
    out.print(f"or in the UI: {api.removesuffix('/api')}/runs/flow-run/{run.id}")


@app.command("approve")
@friendly_errors
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
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for the run to accept or refuse the decision.", min=0)
    ] = 60,
) -> None:
    """A judge's decision on a paused deduction: approve an amount, or reject with a reason. Waits for the
    run's answer: exit 0 once it is taken (with what moved), 1 when the run refuses it (the reason is
    printed; the run waits for a new decision) or the deduction fails."""
    import uuid

    try:
        run_id = uuid.UUID(flow_run_id)
    except ValueError:
        raise InvalidValue("flow_run_id", f"{flow_run_id!r} is not a flow run id (a UUID)") from None
    if reject and not (reason or "").strip():
        raise InvalidValue("--reason", "a rejection needs a reason")
    if reject and amount is not None:
        raise InvalidValue("--amount", "give an amount to approve, or --reject, not both")
    decision: dict[str, object] = {"decision": "reject" if reject else "approve", "judge": judge}
    if reason is not None:
        decision["reason"] = reason
    if amount is not None:  # a JSON number: the form's schema says so
        decision["amount_yuan"] = parse_yuan(amount, "--amount", allow_zero=False) / 100
    _api_url()
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.flow_runs import resume_flow_run

    with get_client(sync_client=True) as client:
        try:
            before = client.read_flow_run(run_id)
        except ObjectNotFound:
            raise InvalidValue("flow_run_id", f"no flow run {run_id} on the Prefect server") from None
        paused_at = before.state.state_details.pause_key if before.state else None
        try:
            resume_flow_run(run_id, run_input=decision)
        except RuntimeError as exc:  # not paused, or the form's schema refused the input
            raise InvalidValue("flow_run_id", f"the run cannot take this decision: {exc}") from None
        out.print(f"decision sent to {run_id}: {decision['decision']} by {judge}; waiting for the run")
        answer = _answer(client, run_id, paused_at, wait)
    if answer is None:
        out.print(f"the run has not answered within {wait:g} s; it goes on: see the Prefect UI")
        return
    taken, message = answer
    (out if taken else err).print(message)
    if not taken:
        raise typer.Exit(1)


def _answer(client: Any, run_id: Any, paused_at: str | None, wait: float) -> tuple[bool, str] | None:
    """Whether the run took the decision, and what it says: it ends (its message), or pauses again for a new
    decision (refused: the reason from its `deduction-refusal` artifact). None when it has not done either
    within `wait` seconds."""
    import time

    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    deadline = time.monotonic() + wait
    while True:
        state = client.read_flow_run(run_id).state
        if state is not None and state.is_final():
            return state.is_completed(), f"{state.name}: {state.message or ''}"
        if state is not None and state.is_paused() and state.state_details.pause_key != paused_at:
            [refusal, *_] = client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]),
                    key=ArtifactFilterKey(any_=["deduction-refusal"]),
                ),
                sort=ArtifactSort.CREATED_DESC,
                limit=1,
            ) or [None]
            why = refusal.description.removeprefix("Decision refused: ") if refusal else "see the Prefect UI"
            return False, f"refused: {why}; the run waits for a new decision"
        if time.monotonic() > deadline:
            return None
        time.sleep(0.5)
