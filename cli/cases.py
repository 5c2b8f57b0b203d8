"""`clerk cases`: import case files, show a case, list cases, record payments, terminate, close, set a
track."""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from clerk import control
from clerk.casebook import casefile, cases, intake
from clerk.money.view import with_money
from clerk.store import audit
from cli.common import (
    ActorOption,
    OnOption,
    ReasonOption,
    acting,
    actor_name,
    day,
    err,
    friendly_errors,
    out,
    settings,
    unit_of_work,
)
from cli.console import print_assets, print_headline, print_standing
from models import casesheet
from models.access import Action
from models.supervision import bureau_today
from models.values import InvalidValue, format_yuan, parse_date, parse_yuan

cases_app = typer.Typer(
    help="Import, inspect and record payments on enforcement cases.", no_args_is_help=True
)


@cases_app.command("import")
@friendly_errors
def cases_import(
    file: Annotated[Path, typer.Argument(help="CSV (UTF-8, with or without BOM) or JSON lines (.jsonl).")],
    actor: ActorOption = None,
) -> None:
    """Import a court's cases: one row per case-debtor pair.

    Columns: case_number, filed_on, judge, applicant, principal, judgment_interest, costs,
    performance_due_on, debtor_kind, debtor_id, debtor_name. The whole file is checked first: if any row
    is bad, every problem is listed with its line and field, and nothing is written. Importing the same
    file again changes nothing.
    """
    report = import_file(file, actor_name(actor))
    out.print(
        f"{file.name}: {report.rows} row(s); {report.cases_added} case(s) added, "
        f"{report.cases_unchanged} already known; {report.debtors_added} debtor(s) added, "
        f"{report.links_added} case-debtor link(s) added"
    )


def import_file(file: Path, actor: str) -> intake.ImportReport:
    conf = settings()
    exceptions = cases.load_credit_code_exceptions(conf.credit_code_exceptions_file)
    with err.status(Text(f"checking {file.name}…")):
        rows, digest = casefile.read_case_file(file, max_bytes=conf.import_max_bytes, exceptions=exceptions)
    with err.status(Text(f"{len(rows):,} row(s) are good; writing…")), unit_of_work() as session:
        report = intake.import_cases(session, rows, actor=actor, source=file.name)
        if report.cases_added or report.links_added:
            audit.append(
                session,
                "intake.file_imported",
                actor=actor,
                payload={
                    "file": file.name,
                    "sha256": digest,
                    "rows": report.rows,
                    "cases_added": report.cases_added,
                    "links_added": report.links_added,
                },
            )
    return report


@cases_app.command("show")
@friendly_errors
def cases_show(
    case_number: Annotated[
        str, typer.Argument(help="e.g. '(2024)豫0185执1234号'; full- or half-width brackets.")
    ],
    on: OnOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (amounts in fen).")] = False,
) -> None:
    """Show a case: its debtors (IDs masked), what is owed on a day, and its sheet: every asset found,
    what we and other authorities hold on it, and why nothing is held where nothing is."""
    when = day(on, "--on")
    with unit_of_work() as session:
        view = cases.case_view(session, case_number, when)
        sheet = with_money(session, control.case_sheet(session, case_number, when, settings().policy()))
    if as_json:
        data = view.as_dict() | {"sheet": sheet_as_dict(sheet)}
        out.print(json.dumps(data, ensure_ascii=False, default=str, indent=2), soft_wrap=True)
        return
    print_case(view)
    print_sheet(sheet)


def print_case(view: cases.CaseView) -> None:
    """The case's heading, debtors and payments (its sheet follows: `print_sheet`)."""
    c = view.case
    heading = Text(c["case_number"], style="bold")
    heading.append(f"  status {c['status']}  judge {c['judge']}  filed {c['filed_on']}", style="")
    out.print(heading)
    out.print(f"applicant {c['applicant']}; performance due {c['performance_due_on']}")
    people = Table("kind", "ID", "name", title="debtors")
    for d in view.debtors:
        people.add_row(d["kind"], d["id"], d["name"])
    out.print(people)
    if view.payments:
        pay = Table("paid on", "amount", title="payments")
        for p in view.payments:
            pay.add_row(p["paid_on"], format_yuan(p["amount"]))
        out.print(pay)
    if c["overrides"]:
        out.print(f"overridden by a judge for this case: {', '.join(c['overrides'])} (see the audit trail)")


def print_sheet(sheet: casesheet.Sheet) -> None:
    """A case sheet at the terminal (the case query's artifact shows the same): where the case stands,
    then every asset with what we hold on it or why we hold nothing."""
    print_standing(f"owed on {sheet.standing.owed.on}", sheet.standing_rows())
    print_assets(sheet.asset_rows())
    for item in sheet.left_free:  # what may never be frozen here (查扣冻规定 art. 3), and why
        out.print(f"left free: {item}")
    for hold in sheet.to_check:  # the case ended; the clerk cannot lift these on its own
        out.print(f"for a person: {hold.words()}")
    print_headline(sheet.headline())


def sheet_as_dict(sheet: casesheet.Sheet) -> dict[str, object]:
    """The sheet for machines: amounts in fen, every asset with the reason in words."""
    s = sheet.standing
    return {
        "planned": sheet.planned,
        "standing": {
            "owed": s.owed.remaining,
            "claimed": s.claimed_fen,
            "held": s.held_fen,
            "short": s.short_fen,
            "seized": s.seized,
            "seizures_waiting": s.seizures_waiting,
        },
        "assets": [
            asdict(found) | {"why_not": reason}
            for found, reason in zip(sheet.found, sheet.reasons(), strict=True)
        ],
        "left_free": list(sheet.left_free),
        "to_check": [asdict(hold) for hold in sheet.to_check],
        "money": None if sheet.money is None else asdict(sheet.money),
    }


@cases_app.command("list")
@friendly_errors
def cases_list(
    on: OnOption = None,
    status: Annotated[str | None, typer.Option(help="Only cases in this status, e.g. active.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="At most this many cases.")] = 50,
    show_all: Annotated[bool, typer.Option("--all", help="Every case (no --limit).")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="JSON lines for machines (amounts in fen).")
    ] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="CSV for spreadsheets (amounts in yuan).")] = False,
) -> None:
    """List cases by case number with what each still owes (in yuan), and say how many were left out."""
    if as_json and as_csv:
        raise InvalidValue("--json", "give --json or --csv, not both")
    when = day(on, "--on")
    with unit_of_work() as session:
        total = cases.count_cases(session, status)
        lines = cases.list_cases(session, when, status, None if show_all else limit)
    if as_json:
        for line in lines:
            record = asdict(line)
            record["remaining_fen"] = record.pop("remaining")
            out.print(json.dumps(record | {"on": str(when)}, ensure_ascii=False), soft_wrap=True)
        return
    if as_csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(["case_number", "judge", "status", "track", "debtors", f"remaining_yuan_on_{when}"])
        for line in lines:
            texts = [line.case_number, line.judge, line.status, line.track or "", str(line.debtors)]
            writer.writerow(
                [audit.spreadsheet_safe(v) for v in texts] + [format_yuan(line.remaining).replace(",", "")]
            )
        return
    table = Table(
        title=f"cases, what each owes on {when} (yuan)",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        title_justify="left",
    )
    table.add_column("case number", no_wrap=True)
    table.add_column("judge", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("track", no_wrap=True)
    table.add_column("debtors", justify="right")
    table.add_column("owed", justify="right", no_wrap=True)
    for line in lines:
        table.add_row(
            line.case_number,
            line.judge,
            line.status,
            line.track or "-",
            str(line.debtors),
            format_yuan(line.remaining),
        )
    out.print(table)
    shown = f"{len(lines):,} of {total:,} case(s)" + (f" in status {status}" if status else "")
    more = "" if len(lines) == total else "; --limit N or --all for more, --csv or --json for machines"
    err.print(shown + more)


@cases_app.command("pay")
@friendly_errors
def cases_pay(
    case_number: Annotated[str, typer.Argument(help="The case the payment is for.")],
    amount: Annotated[str, typer.Argument(help="Yuan, at most 2 decimals, e.g. 5000 or 1234.50.")],
    on: Annotated[str, typer.Option("--on", help="The day it was paid (YYYY-MM-DD).")],
    actor: ActorOption = None,
    again: Annotated[
        bool,
        typer.Option("--again", help="A second payment of the same amount on the same day, not a repeat."),
    ] = False,
    overpaid: Annotated[
        bool, typer.Option("--overpaid", help="The debtor paid more than is owed: record all of it.")
    ] = False,
) -> None:
    """Record a payment by the debtor (or an amount recovered) and show what is still owed. Only the case's
    judge or a person CLERK_PEOPLE allows at its court may (--actor, else CLERK_ACTOR or the login). The
    same amount on the same day twice, more than is owed, or any payment on a paid case is refused unless
    said so."""
    fen = parse_yuan(amount, "amount", allow_zero=False)
    paid_on = parse_date(on, "--on")
    who = acting(case_number, actor, Action.PAY)
    with unit_of_work() as session:
        after = cases.record_payment(
            session,
            case_number,
            fen,
            paid_on,
            actor=who,
            today=bureau_today(),
            again=again,
            overpaid=overpaid,
        )
    out.print(
        f"payment of {format_yuan(fen)} recorded; remaining on {paid_on}: {format_yuan(after.remaining)}"
    )


@cases_app.command("terminate")
@friendly_errors
def cases_terminate(
    case_number: Annotated[str, typer.Argument(help="The case to terminate for now (终本).")],
    reason: ReasonOption,
    actor: ActorOption = None,
) -> None:
    """Terminate a case for now (终本): no assets to enforce. Its debtors are re-queried every 6 months for 5
    years (settings); a hit resumes it as a new 执恢 case, linked to this one, and tells the judge and the
    applicant. Its measures stay in force and are renewed."""
    who = acting(case_number, actor, Action.MANAGE)
    with unit_of_work() as session:
        case = cases.change_status(
            session, case_number, "terminated", actor=who, reason=reason, today=bureau_today()
        )
        out.print(f"{case.case_number} terminated for now on {case.terminated_on}; re-queried every 6 months")


@cases_app.command("close")
@friendly_errors
def cases_close(
    case_number: Annotated[str, typer.Argument(help="The case to close.")],
    reason: ReasonOption,
    withdrawn: Annotated[bool, typer.Option(help="The applicant withdrew the application.")] = False,
    actor: ActorOption = None,
) -> None:
    """Close a case (or mark it withdrawn): the release flow then lifts all of its measures."""
    status = "withdrawn" if withdrawn else "closed"
    who = acting(case_number, actor, Action.MANAGE)
    with unit_of_work() as session:
        case = cases.change_status(
            session, case_number, status, actor=who, reason=reason, today=bureau_today()
        )
        out.print(f"{case.case_number} is {status}; its measures are released by the next release run")


@cases_app.command("track")
@friendly_errors
def cases_track(
    case_number: Annotated[str, typer.Argument(help="The case.")],
    track: Annotated[
        str, typer.Argument(help="fast (速执), simple (简执), normal (普执) or special (特执).")
    ],
    reason: ReasonOption,
    actor: ActorOption = None,
) -> None:
    """A judge's choice of track, overriding triage (audited); it sets the case's supervision deadline."""
    who = acting(case_number, actor, Action.MANAGE)
    with unit_of_work() as session:
        case = cases.set_track(session, case_number, track, actor=who, reason=reason)
        out.print(f"{case.case_number} is on the {case.track} track (set by a judge)")


@cases_app.command("override")
@friendly_errors
def cases_override(
    case_number: Annotated[str, typer.Argument(help="The case.")],
    exemption: Annotated[
        str,
        typer.Argument(
            help="allowance (freeze a person's living allowance too) or protected (freeze accounts whose "
            "purpose the law protects)."
        ),
    ],
    reason: ReasonOption,
    lift: Annotated[bool, typer.Option("--lift", help="Lift the override again.")] = False,
    actor: ActorOption = None,
) -> None:
    """A judge's override of what may never be frozen, for this case only (audited with the reason): the
    next control of the case freezes accordingly. Only the case's judge, or a judge or supervisor
    CLERK_PEOPLE allows at its court, may."""
    who = acting(case_number, actor, Action.OVERRIDE)
    with unit_of_work() as session:
        case = cases.set_override(session, case_number, exemption, on=not lift, actor=who, reason=reason)
        state = "lifted" if lift else "set"
        out.print(f"{case.case_number}: override of the {exemption} exemption {state} (audited)")
