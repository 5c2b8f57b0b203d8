"""What a judge runs: `clerk query` (a case query now, `cli.query`), `clerk run` (any flow once), `clerk
deduct` and `clerk approve` (`cli.deduction`)."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.common import app, err, friendly_errors, out
from cli.deduction import approve, deduct
from cli.query import query
from deployments import catalog
from models.values import InvalidValue

app.command("query")(query)
app.command("deduct")(deduct)
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
    ended_well = state.is_completed() and not runtime.was_refused(state)
    (out if ended_well else err).print(f"{name}: {state.name}: {state.message or ''}")
    if not ended_well:
        raise typer.Exit(2 if runtime.was_refused(state) else 1)
