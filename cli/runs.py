"""What a judge runs: `clerk query` (a case query now), `clerk run` (any flow once), `clerk deduct` and
`clerk approve` (`cli.approve`)."""

from __future__ import annotations

import os
from typing import Annotated, cast

import typer

from cli import served
from cli.approve import approve
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
from models.status import REFUSED
from models.values import CaseNumber, InvalidValue

app.command("query")(query)
app.command("approve")(approve)


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
    ended_well = state.is_completed() and state.name != REFUSED
    (out if ended_well else err).print(f"{name}: {state.name}: {state.message or ''}")
    if not ended_well:
        raise typer.Exit(2 if state.name == REFUSED else 1)


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
