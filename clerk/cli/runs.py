"""What a judge runs: `clerk query` (a case query now), `clerk run` (any flow once), `clerk deduct` and
`clerk approve`."""

from __future__ import annotations

import os
from typing import Annotated, cast

import typer

from clerk.cli.cases import print_sheet
from clerk.cli.common import (
    RequestedByOption,
    app,
    check_access,
    err,
    friendly_errors,
    out,
    settings,
)
from deployments import catalog
from models.access import Action
from models.casesheet import Sheet
from models.values import CaseNumber, InvalidValue, format_yuan, parse_yuan


@app.command("query")
@friendly_errors
def query(
    case_number: Annotated[str, typer.Argument(help="e.g. '(2024)豫0185执1234号'.")],
    requested_by: RequestedByOption,
    registry: Annotated[
        list[str] | None, typer.Option("--registry", "-r", help="Ask only this registry (repeatable).")
    ] = None,
    auto_control: Annotated[bool, typer.Option(help="Freeze and seize after the query.")] = True,
    dry_run: Annotated[bool, typer.Option(help="Report what would be frozen; change nothing.")] = False,
) -> None:
    """Query every registry about one case now (the case-query flow) and print what happened. Only the
    case's judge, or a person the settings (CLERK_PEOPLE) allow at its court, may ask; refusals are
    audited."""
    number = str(CaseNumber.parse(case_number))
    settings().registry_codes(registry, "--registry")  # a typo is one clear line, before any run starts
    check_access(number, requested_by, Action.QUERY)
    from flows import runtime
    from flows.case_query import case_query

    state = runtime.run(
        case_query(
            case_number=number,
            registries=registry or None,
            auto_control=auto_control,
            dry_run=dry_run,
            requested_by=requested_by,
            return_state=True,
        )
    )
    if not state.is_completed():
        err.print(f"error: the case query failed: {state.message}")
        raise typer.Exit(1)
    print_sheet(cast(Sheet, state.result()))


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
    state = runtime.run(flow(return_state=True))
    (out if state.is_completed() else err).print(f"{name}: {state.name}: {state.message or ''}")
    if not state.is_completed():
        raise typer.Exit(1)


def _api_url() -> str:
    url = os.environ.get("PREFECT_API_URL")
    if not url:
        from prefect.settings import PREFECT_API_URL

        url = PREFECT_API_URL.value()
    if not url:
        raise InvalidValue(
            "PREFECT_API_URL",
            "a deduction waits for a judge on a Prefect server: start `clerk serve` (or name a server in "
            "PREFECT_API_URL) first",
        )
    return str(url)


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
    api = _api_url()
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
    judge: Annotated[str, typer.Option(help="Your name, for the audit trail.")],
    amount: Annotated[
        str | None, typer.Option(help="Yuan to approve, at most the amount proposed; default all of it.")
    ] = None,
    reject: Annotated[bool, typer.Option("--reject", help="Reject the deduction (needs --reason).")] = False,
    reason: Annotated[str | None, typer.Option(help="Why (required with --reject).")] = None,
) -> None:
    """A judge's decision on a paused deduction: approve an amount, or reject with a reason."""
    import uuid

    try:
        run_id = uuid.UUID(flow_run_id)
    except ValueError:
        raise InvalidValue("flow_run_id", f"{flow_run_id!r} is not a flow run id (a UUID)") from None
    if reject and not (reason or "").strip():
        raise InvalidValue("--reason", "a rejection needs a reason")
    if reject and amount is not None:
        raise InvalidValue("--amount", "give an amount to approve, or --reject, not both")
    decision: dict[str, object] = {"approve": not reject, "judge": judge, "reason": reason}
    if amount is not None:
        decision["amount_yuan"] = format_yuan(parse_yuan(amount, "--amount", allow_zero=False)).replace(
            ",", ""
        )
    _api_url()
    from prefect.exceptions import ObjectNotFound
    from prefect.flow_runs import resume_flow_run

    try:
        resume_flow_run(run_id, run_input=decision)
    except ObjectNotFound:
        raise InvalidValue("flow_run_id", f"no flow run {run_id} on the Prefect server") from None
    except RuntimeError as exc:  # not paused, or the server refused the input
        raise InvalidValue("flow_run_id", f"the run cannot be resumed: {exc}") from None
    out.print(f"decision sent to {run_id}: {'rejected' if reject else 'approved'} by {judge}")
