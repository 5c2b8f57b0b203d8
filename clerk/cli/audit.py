"""`clerk audit` (verify and export the audit trail) and `clerk report` (the daily report)."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from clerk.casebook import cases, exports
from clerk.cli.common import OverwriteOption, err, friendly_errors, out, unit_of_work
from clerk.store import audit
from models.values import InvalidValue, parse_date

audit_app = typer.Typer(help="Check and export the tamper-evident audit trail.", no_args_is_help=True)


report_app = typer.Typer(help="Reports for the bureau.", no_args_is_help=True)


@audit_app.command("verify")
@friendly_errors
def audit_verify(
    expect_head: Annotated[
        str | None, typer.Option(help="The head hash recorded earlier: catches events cut from the end.")
    ] = None,
) -> None:
    """Check the whole hash chain; name the first event that was edited, deleted or moved."""
    with unit_of_work() as session:
        result = audit.verify(session, expect_head)
    if result.ok:
        out.print(f"audit trail intact: {result.events} event(s); head {result.head}")
        return
    err.print(
        f"audit trail BROKEN at event {result.broken_at}: {result.reason}; "
        f"the {result.events} event(s) before it are intact"
    )
    raise typer.Exit(1)


@audit_app.command("export")
@friendly_errors
def audit_export(
    case: Annotated[str, typer.Option("--case", help="The case whose trail to export.")],
    fmt: Annotated[str, typer.Option("--format", help="jsonl or csv.")] = "jsonl",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="A new file to write; default stdout.")
    ] = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Export one case's audit trail as JSON lines or CSV (cells a spreadsheet would run are escaped)."""
    if fmt not in ("jsonl", "csv"):
        raise InvalidValue("--format", f"{fmt!r} is not a format: use jsonl or csv")
    with unit_of_work() as session:
        number = cases.get_case(session, case).case_number
        events = audit.case_events(session, number)
        if output is None:
            count = audit.export(events, sys.stdout, fmt)
        else:
            with exports.open_new(output, field="--output", replace=overwrite) as handle:
                count = audit.export(events, handle, fmt)
    err.print(f"{count} event(s) exported for {number}")


@report_app.command("daily")
@friendly_errors
def report_daily(
    day: Annotated[str | None, typer.Option(help="YYYY-MM-DD; default yesterday (Beijing time).")] = None,
    csv_file: Annotated[
        Path | None, typer.Option("--csv", help="Also write the report as CSV to this new file.")
    ] = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Per court and judge: queries, hits, frozen and seized, renewed, released, deductions, overdue nodes."""
    from clerk.supervision import reports

    on = parse_date(day, "--day") if day else reports.yesterday(dt.datetime.now(dt.UTC))
    with unit_of_work() as session:
        rows = reports.daily(session, on)
    table = Table(title=f"Daily report {on}")
    for column in reports.COLUMNS:
        table.add_column(column, justify="left" if column in ("court", "judge") else "right")
    for r in rows:
        table.add_row(*(str(r[c]) for c in reports.COLUMNS))
    out.print(table)
    if csv_file is not None:
        reports.write_csv(csv_file, rows, replace=overwrite)
        out.print(f"written: {csv_file} ({len(rows)} rows)")
