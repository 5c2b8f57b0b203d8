"""`clerk query`: a judge's case query, now. Light on purpose (typer, rich, httpx and the case number's
rule): with a Prefect server running that serves the case-query deployment (`clerk serve`, or the server
PREFECT_API_URL names), the query is a run of that deployment, started and followed through the server's
API (`cli.served`): no Prefect import, no temporary server. Without one, the flow runs in this
process (`query_here`), against the running server if there is one.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Annotated, cast

import typer

from cli import served
from cli.console import err, light_errors, out, print_assets, print_headline
from cli.options import RequestedByOption
from models.values import CaseNumber, InvalidValue

if TYPE_CHECKING:
    from models.casesheet import Sheet

#: A dry run's heading, before anything else it prints.
DRY_RUN = "DRY RUN: the registries are asked; nothing is frozen, seized, recorded or sent"


def query(
    case_number: Annotated[str, typer.Argument(help="e.g. '(2024)豫0185执1234号'.")],
    requested_by: RequestedByOption,
    registry: Annotated[
        list[str] | None, typer.Option("--registry", "-r", help="Ask only this registry (repeatable).")
    ] = None,
    auto_control: Annotated[bool, typer.Option(help="Freeze and seize after the query.")] = True,
    dry_run: Annotated[
        bool, typer.Option(help="Show the plan (what would be frozen, where); change nothing.")
    ] = False,
    wait: Annotated[float, typer.Option(help="Seconds to wait for a served run to end.", min=1)] = 300,
) -> None:
    """Query every registry about one case now and print its case sheet: what it owes, every asset found,
    what is held on each or why not. Only the case's judge, or a person the settings (CLERK_PEOPLE) allow
    at its court, may ask; refusals are audited. Runs on `clerk serve` (or PREFECT_API_URL's server) when it
    serves the case-query deployment, in seconds; otherwise here."""
    with light_errors():
        number = str(CaseNumber.parse(case_number))
        if registry:  # a typo is one clear line before any run starts (the settings load only for this)
            from clerk.settings import SettingsError, get_settings

            try:
                get_settings().registry_codes(registry, "--registry")
            except SettingsError as exc:
                raise InvalidValue("settings", str(exc)) from None
        url = served.server_url()
        with served.Api(url) as api:
            deployment = api.served(served.CASE_QUERY)
            if deployment is not None:
                parameters: dict[str, object] = {
                    "case_number": number,
                    "requested_by": requested_by,
                    "registries": registry or [],
                    "auto_control": auto_control,
                    "dry_run": dry_run,
                }
                _on_server(api, deployment, parameters, wait)
                return
            if api.answered:  # a server runs, but nothing serves case-query: run here, recorded there
                os.environ["PREFECT_API_URL"] = url
    from cli.common import friendly_errors

    friendly_errors(query_here)(number, requested_by, registry, auto_control=auto_control, dry_run=dry_run)


def query_here(
    number: str, requested_by: str, registry: list[str] | None, *, auto_control: bool, dry_run: bool
) -> None:
    """`clerk query` when no server serves the case-query deployment: the flow runs in this process
    (`query` has checked the case number and the registry codes). What it needs is imported here, when it
    runs: `clerk query` on a running server loads none of it."""
    from clerk.settings import use_prefect_defaults

    use_prefect_defaults()  # before anything imports Prefect
    from cli.cases import print_sheet
    from cli.common import check_access
    from flows import runtime
    from flows.case_query import case_query
    from models.access import Action

    check_access(number, requested_by, Action.QUERY)
    if dry_run:
        out.print(DRY_RUN)
    state = runtime.run(
        case_query(
            case_number=number,
            registries=registry or [],
            auto_control=auto_control,
            dry_run=dry_run,
            requested_by=requested_by,
            return_state=True,
        ),
        f"case query {number}",
    )
    if runtime.was_refused(state):
        err.print(f"error: {state.message}")
        raise typer.Exit(2)
    if not state.is_completed():
        err.print(f"error: the case query failed: {state.message}")
        raise typer.Exit(1)
    print_sheet(cast("Sheet", state.result()))


def _on_server(api: served.Api, deployment: str, parameters: dict[str, object], wait: float) -> None:
    run = api.start(deployment, parameters)
    if parameters["dry_run"]:
        out.print(DRY_RUN)
    out.print(f"case query {parameters['case_number']}: {api.ui_link(run)}")
    finished = api.follow(run, wait, "the case query has not ended")
    if not finished.completed:
        err.print(f"error: the case query failed: {finished.message or finished.name}")
        raise typer.Exit(1)
    rows = api.artifact(run, "case-sheet-assets")
    print_assets(json.loads(rows) if isinstance(rows, str) else rows or [])
    print_headline(finished.message)
    out.print(
        f"the whole sheet: `clerk cases show '{parameters['case_number']}'`, or the run's case-sheet artifact"
    )
