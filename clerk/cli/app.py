"""`clerk`: the command line of query-clerk.

Every command that needs the database upgrades its schema on first use. Errors in what the user typed or
in a file are printed as one clear line per problem (field and rule), with exit code 2; nothing is written
when a command fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import getpass
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar, cast

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from clerk.casebook import access, cases, exports, intake
from clerk.settings import PREFECT_DEFAULTS, Settings, SettingsError, get_settings
from clerk.store import audit, db
from connectors import loader
from connectors.base import Health
from connectors.loader import ConnectorLoadError
from connectors.simulator import serve as simulator_serve
from connectors.simulator.faults import FaultPlan
from connectors.simulator.serve import SimulatorError
from connectors.simulator.world import write_case_file as write_world_cases
from models.access import Action
from models.supervision import bureau_today
from models.values import CaseNumber, InvalidValue, format_yuan, parse_date, parse_yuan

app = typer.Typer(
    help="query-clerk: asset query and control for court enforcement bureaus.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold personal data
    rich_markup_mode=None,
)
cases_app = typer.Typer(
    help="Import, inspect and record payments on enforcement cases.", no_args_is_help=True
)
audit_app = typer.Typer(help="Check and export the tamper-evident audit trail.", no_args_is_help=True)
db_app = typer.Typer(help="Manage the database schema.", no_args_is_help=True)
report_app = typer.Typer(help="Reports for the bureau.", no_args_is_help=True)
registries_app = typer.Typer(
    help="The registries in use: list them and check their health.", no_args_is_help=True
)
app.add_typer(cases_app, name="cases")
app.add_typer(registries_app, name="registries")
app.add_typer(audit_app, name="audit")
app.add_typer(db_app, name="db")
app.add_typer(report_app, name="report")

# Markup off: names, case numbers and registry text are data, never rich markup ("[/]" must not crash a
# table, "[bold]" must not change what is shown).
out = Console(highlight=False, soft_wrap=True, markup=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)

F = TypeVar("F", bound=Callable[..., Any])

SAMPLE_CASES = Path(__file__).resolve().parents[2] / "samples" / "cases.csv"


def friendly_errors(func: F) -> F:
    """Turn the errors a user can fix into clear messages and exit code 2 (1 for an unreachable database)."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except intake.IntakeError as exc:
            err.print(
                f"error: the case file was not imported ({len(exc.errors)} problem(s)); nothing was written:"
            )
            for problem in exc.errors[:200]:
                err.print(f"  {problem}")
            if len(exc.errors) > 200:
                err.print(f"  … and {len(exc.errors) - 200} more")
            raise typer.Exit(2) from None
        except (InvalidValue, cases.CaseNotFound, SettingsError, ConnectorLoadError, SimulatorError) as exc:
            err.print(f"error: {exc}")
            raise typer.Exit(2) from None
        except OperationalError as exc:
            # The URL may hold a password: name the problem, not the connection string.
            reason = str(exc.orig).splitlines()[0] if exc.orig else type(exc).__name__
            err.print(f"error: the database cannot be reached or used: {reason}")
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def settings() -> Settings:
    return get_settings()


@contextmanager
def unit_of_work() -> Iterator[Session]:
    """One transaction: committed when the block ends, rolled back on any error."""
    engine = db.engine_for(settings().effective_database_url)
    with db.session_factory(engine).begin() as session:
        yield session


def actor_name(explicit: str | None) -> str:
    name = explicit or settings().actor or getpass.getuser()
    return audit.Actor.user(name)


def day(value: str | None, field: str) -> dt.date:
    return bureau_today() if value is None else parse_date(value, field)


OnOption = Annotated[
    str | None, typer.Option("--on", help="The day to compute what is owed on (YYYY-MM-DD); default today.")
]
ActorOption = Annotated[
    str | None,
    typer.Option(
        "--actor",
        help="Who is doing this (the case's judge, or a person CLERK_PEOPLE allows at its court), for the "
        "audit trail; default CLERK_ACTOR or $USER.",
    ),
]


# --- db ---------------------------------------------------------------------------------------------------


@db_app.command("upgrade")
@friendly_errors
def db_upgrade() -> None:
    """Apply every database migration not yet applied."""
    engine = db.make_engine(settings().effective_database_url)
    before, after = db.upgrade(engine)
    if before == after:
        out.print(f"database schema is up to date (revision {after})")
    else:
        out.print(f"database schema upgraded from {before or 'empty'} to {after}")


# --- cases ------------------------------------------------------------------------------------------------


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
    report = _import(file, actor_name(actor))
    out.print(
        f"{file.name}: {report.rows} row(s); {report.cases_added} case(s) added, "
        f"{report.cases_unchanged} already known; {report.debtors_added} debtor(s) added, "
        f"{report.links_added} case-debtor link(s) added"
    )


def _import(file: Path, actor: str) -> intake.ImportReport:
    conf = settings()
    exceptions = cases.load_credit_code_exceptions(conf.credit_code_exceptions_file)
    with err.status(Text(f"checking {file.name}…")):
        rows, digest = intake.read_case_file(file, max_bytes=conf.import_max_bytes, exceptions=exceptions)
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
    """Show a case: its debtors (IDs masked), what is owed on a day, its hits and measures."""
    with unit_of_work() as session:
        view = cases.case_view(session, case_number, day(on, "--on"))
    if as_json:
        out.print_json(json.dumps(view.as_dict(), ensure_ascii=False))
        return
    _print_case(view)


def _print_case(view: cases.CaseView) -> None:
    c, o = view.case, view.owed
    heading = Text(c["case_number"], style="bold")
    heading.append(f"  status {c['status']}  judge {c['judge']}  filed {c['filed_on']}", style="")
    out.print(heading)
    out.print(f"applicant {c['applicant']}; performance due {c['performance_due_on']}")
    debts = Table(title=f"owed on {o['on']} ({o['days_late']} days late)", show_header=False)
    for label, key in (
        ("principal", "principal"),
        ("judgment interest", "judgment_interest"),
        ("delayed-performance interest", "delayed_interest"),
        ("enforcement fee", "fee"),
        ("other costs", "costs"),
        ("paid", "paid"),
        ("remaining", "remaining"),
    ):
        debts.add_row(label, format_yuan(o[key]))
    out.print(debts)
    people = Table("kind", "ID", "name", title="debtors")
    for d in view.debtors:
        people.add_row(d["kind"], d["id"], d["name"])
    out.print(people)
    if view.payments:
        pay = Table("paid on", "amount", title="payments")
        for p in view.payments:
            pay.add_row(p["paid_on"], format_yuan(p["amount"]))
        out.print(pay)
    hits = Table("debtor", "registry", "kind", "asset", "balance", title="hits")
    for h in view.hits:
        balance = "" if h["balance"] is None else format_yuan(h["balance"])
        hits.add_row(h["debtor"], h["registry"], h["kind"], h["identifier"], balance)
    out.print(hits if view.hits else "hits: none yet")
    measures = Table("registry", "kind", "status", "requested", "actual", "expires", title="measures")
    for m in view.measures:
        freeze = m["kind"] == "freeze"
        requested = format_yuan(m["requested"]) if freeze else "whole item"
        actual = format_yuan(m["actual"]) if freeze and m["actual"] is not None else ""
        measures.add_row(m["registry"], m["kind"], m["status"], requested, actual, m["expires_on"] or "")
    out.print(measures if view.measures else "measures: none yet")


@cases_app.command("list")
@friendly_errors
def cases_list(
    on: OnOption = None,
    status: Annotated[str | None, typer.Option(help="Only cases in this status, e.g. active.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many cases.")] = 100,
) -> None:
    """List cases with what each still owes."""
    when = day(on, "--on")
    with unit_of_work() as session:
        lines = cases.list_cases(session, when, status, limit)
    table = Table("case number", "judge", "status", "track", "debtors", f"remaining on {when}")
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


RequestedByOption = Annotated[
    str,
    typer.Option(
        "--requested-by",
        help="Who asks (required): the case's judge, or a person CLERK_PEOPLE allows at the case's court.",
    ),
]


def operator() -> str:
    """Who runs this command, for the audit trail of a refusal: CLERK_ACTOR or the login, never a name
    given on the command line."""
    return audit.Actor.user(settings().actor or getpass.getuser())


def check_access(number: str, who: str, action: Action, field: str = "requested_by") -> None:
    """Refuse (audited, under the operator) before anything is asked of a registry or changed."""
    conf = settings()
    with unit_of_work() as session:
        case = cases.get_case(session, number)
    try:
        access.authorize(
            db.session_factory(db.engine_for(conf.effective_database_url)),
            case,
            who,
            action,
            conf.access,
            operator(),
        )
    except access.Refused as exc:
        raise InvalidValue(field, str(exc).removeprefix("requested_by: ")) from None


def acting(case_number: str, actor: str | None, action: Action) -> str:
    """The audit trail's actor for a change to a case, once the person (--actor, else CLERK_ACTOR or the
    login) is allowed to make it: the case's judge, or a person CLERK_PEOPLE allows at its court."""
    who = actor or settings().actor or getpass.getuser()
    check_access(str(CaseNumber.parse(case_number)), who, action, "--actor")
    return audit.Actor.user(who)


OverwriteOption = Annotated[
    bool,
    typer.Option(
        "--overwrite", help="Replace the file if it exists (a link there is replaced, never followed)."
    ),
]
ReasonOption = Annotated[str, typer.Option("--reason", help="Why, for the audit trail (required).")]


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


# --- audit ------------------------------------------------------------------------------------------------


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


# --- registries and simulators -----------------------------------------------------------------------


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


@registries_app.command("list")
@friendly_errors
def registries_list() -> None:
    """The registries the settings name (CLERK_REGISTRIES), with their adapters and limits."""
    table = Table("code", "name", "kind", "adapter", "URL", "batch", "conn", "req/s")
    for r in settings().registries:
        table.add_row(
            r.code,
            r.name,
            r.kind.value,
            r.adapter,
            r.base_url,
            str(r.batch_size),
            str(r.max_connections),
            f"{r.requests_per_second:g}",
        )
    out.print(table)


@registries_app.command("check")
@friendly_errors
def registries_check() -> None:
    """Load every registry's adapter and ask each for its health; exit 1 if any is down."""
    conf = settings()
    results = asyncio.run(_health(conf))
    table = Table("code", "kind", "adapter", "health", "ms", "detail")
    for config, health in zip(conf.registries, results, strict=True):
        table.add_row(
            config.code,
            config.kind.value,
            config.adapter,
            "ok" if health.ok else "DOWN",
            f"{health.latency_ms:.0f}",
            health.detail,
        )
    out.print(table)
    down = [h.registry for h in results if not h.ok]
    if down:
        err.print(f"{len(down)} of {len(results)} registries are down: {', '.join(down)}")
        raise typer.Exit(1)
    out.print(f"all {len(results)} registries answer")


async def _health(conf: Settings) -> list[Health]:
    connectors = loader.build(conf.registries, conf.allowed_adapters)
    try:
        return list(await asyncio.gather(*(c.health() for c in connectors.values())))
    finally:
        await asyncio.gather(*(c.aclose() for c in connectors.values()))


@app.command("sim")
@friendly_errors
def sim(
    debtors: Annotated[
        int, typer.Option(min=1, max=5_000_000, help="How many debtors the world holds.")
    ] = 1_000,
    seed: Annotated[int, typer.Option(help="The same seed gives the same world.")] = 1,
    write_cases: Annotated[
        Path | None, typer.Option(help="Also write a case file (CSV) that puts these debtors into cases.")
    ] = None,
    faults: Annotated[
        str | None,
        typer.Option(
            help='Fault rates as JSON, e.g. \'{"error": 0.1, "lost": 0.05, "seed": 7}\' '
            "(slow, error, throttle, garbage, later, lost; change them later with PUT /_sim/faults)."
        ),
    ] = None,
) -> None:
    """Serve a simulator for every registry in the settings (on 127.0.0.1), with a seeded world of debtors.

    Banks, the real-estate registry and the vehicle registry answer over their real wire formats, keep a
    ledger, honour idempotency keys and credentials, and inject faults when asked (PUT /_sim/faults).
    Stop with Ctrl-C.
    """
    conf = settings()
    now = dt.datetime.now(dt.UTC)
    plan = _fault_plan(faults)
    with err.status(Text(f"generating {debtors:,} debtors…")):
        world = simulator_serve.build_world(conf.registries, debtors, seed, now, plan, conf.notifier_url)
    held = ", ".join(f"{code} {count:,}" for code, count in world.holdings.items())
    out.print(f"{debtors:,} debtors (seed {seed}) in {world.seconds:.1f} s; holdings: {held}")
    if write_cases is not None:
        rows = write_world_cases(write_cases, world.debtors, seed, now.date())
        out.print(f"case file for these debtors: {write_cases} ({rows:,} rows)")

    def ready() -> None:
        for simulator, host, port in world.simulators:
            out.print(f"  {simulator.code:<12} {simulator.kind:<12} http://{host}:{port}")
        if world.sms_at is not None:
            out.print(f"  {'sms-gateway':<12} {'notices':<12} http://{world.sms_at[0]}:{world.sms_at[1]}")
        out.print("serving; Ctrl-C to stop")

    asyncio.run(simulator_serve.serve(world, ready))
    out.print("simulators stopped")


def _fault_plan(text: str | None) -> FaultPlan | None:
    if text is None:
        return None
    try:
        values = json.loads(text)
        if not isinstance(values, dict):
            raise TypeError("a JSON object is needed")
        return FaultPlan(**values)
    except (ValueError, TypeError) as exc:
        reason = str(exc).replace("FaultPlan.__init__() got an ", "")
        raise InvalidValue("--faults", f'{reason}; e.g. \'{{"error": 0.1, "seed": 7}}\'') from None


# --- demo -------------------------------------------------------------------------------------------------


@app.command("demo")
@friendly_errors
def demo(
    debtors: Annotated[
        int, typer.Option(min=10, max=200_000, help="Debtors in the simulated world.")
    ] = 2_000,
    seed: Annotated[int, typer.Option(help="The same seed gives the same world.")] = 1,
    file: Annotated[Path, typer.Option(help="Sample cases imported as well.")] = SAMPLE_CASES,
) -> None:
    """The main job on the embedded default: simulators for every registry, the sample cases and a seeded
    world of debtors imported, one sweep (query, record, freeze and seize within the cap), and a report."""
    from deployments import embedded

    conf = settings()
    out.print(f"database: {conf.database_display}")

    def import_file(path: Path) -> None:
        report = _import(path, audit.Actor.SYSTEM)
        out.print(
            f"imported {path.name}: {report.cases_added:,} new case(s), {report.cases_unchanged:,} known"
        )

    r = embedded.run_demo(file, debtors, seed, out.print, import_file)
    table = Table("", "", title="after the sweep", show_header=False)
    for label, value in (
        ("cases in the case book", f"{r.cases:,}"),
        ("debtors queried", f"{r.cases_queried:,}"),
        ("registry lookups", f"{r.lookups:,} ({r.failed_lookups:,} failed, retried next run)"),
        ("hits (assets found)", f"{r.hits:,}"),
        (
            "measures in force",
            f"{r.measures_effective:,} ({r.partial:,} partial freezes, {r.seizures:,} seizures)",
        ),
        ("frozen", f"{format_yuan(r.frozen_fen)} yuan"),
        ("queued behind other courts", f"{r.queued:,}"),
        ("awaiting a registry's answer", f"{r.unconfirmed:,}"),
    ):
        table.add_row(label, value)
    out.print(table)
    out.print(f"sweep: {r.sweep_message}; demo done in {r.seconds:.1f} s")
    out.print(
        "next: `clerk serve` starts the Prefect UI (http://127.0.0.1:4200) with the scheduled deployments;"
    )
    with unit_of_work() as session:
        first = cases.list_cases(session, bureau_today(), limit=1)
    if first:
        out.print(
            f"      with `clerk sim` running, `clerk query '{first[0].case_number}' --requested-by "
            f"{first[0].judge} --dry-run` has the case's judge ask every registry about it."
        )


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
    out.print(state.result())
    with unit_of_work() as session:
        view = cases.case_view(session, number, bureau_today())
    _print_case(view)


FLOWS = ("sweep", "collect", "watch", "renewal", "release", "deadlines", "daily-report")


@app.command("run")
@friendly_errors
def run_flow(
    name: Annotated[str, typer.Argument(help=f"One of: {', '.join(FLOWS)}.")],
) -> None:
    """Run one of the scheduled flows once, now, in this process (without a server: Prefect starts a
    temporary one, about 10 s). `clerk serve` runs them all on their schedules."""
    if name not in FLOWS:
        raise InvalidValue("name", f"{name!r} is not a flow: use one of {', '.join(FLOWS)}")
    from deployments.embedded import scheduled_flows
    from flows import runtime

    flow = scheduled_flows()[name]
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


@app.command("serve")
@friendly_errors
def serve_command(
    port: Annotated[
        int | None, typer.Option(help="Port of the Prefect server to start (CLERK_PREFECT_PORT).")
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--only",
            help="Serve only this deployment (repeatable), e.g. --only case-query on a machine for judges' "
            "queries.",
        ),
    ] = None,
) -> None:
    """Run the clerk on this machine: a Prefect server with its UI on 127.0.0.1 (unless PREFECT_API_URL
    names one), and every deployment with its schedule (sweep, collect, watch, renewal, release, deadlines,
    daily-report; case-query and deduction on demand). Ctrl-C stops all."""
    from deployments import embedded

    names = [*embedded.SCHEDULES, *embedded.ON_DEMAND]
    unknown = [name for name in only or [] if name not in names]
    if unknown:
        raise InvalidValue("--only", f"{unknown[0]!r} is not a deployment: use one of {', '.join(names)}")
    conf = settings()
    with embedded.prefect_server(port or conf.prefect_port, out.print) as api_url:
        out.print(
            f"Prefect UI: {api_url.removesuffix('/api')}  (runs, schedules, artifacts; start a case query "
            "from the case-query deployment's Run button)"
        )
        with contextlib.suppress(KeyboardInterrupt):
            embedded.serve_all(conf, api_url, out.print, only)
    out.print("stopped")


@app.command("setup")
@friendly_errors
def setup_command(
    schedules: Annotated[
        bool, typer.Option(help="Leave the deployments' schedules active (--no-schedules pauses them).")
    ] = True,
) -> None:
    """Prepare the Prefect server PREFECT_API_URL names for a pool of workers: the work pool clerk-process,
    one global rate limit per registry (registry-<code>, from its requests_per_second), the automation that
    marks runs whose heartbeats stopped Crashed, and the deployments of prefect.yaml. Safe to run again."""
    from deployments import setup

    try:
        report = setup.setup(settings().registries, out.print, schedules=schedules)
    except setup.SetupError as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(1) from None
    out.print(f"deployed: {', '.join(report.deployments)}")


@app.command("up")
@friendly_errors
def up_command(
    workers: Annotated[int, typer.Option(min=1, max=32, help="Process workers to start.")] = 2,
    pg_port: Annotated[int, typer.Option(min=1024, max=65535, help="Port of PostgreSQL.")] = 54329,
    port: Annotated[int | None, typer.Option(help="Port of the Prefect server (CLERK_PREFECT_PORT).")] = None,
    schedules: Annotated[
        bool, typer.Option(help="Leave the schedules active (--no-schedules: runs start only on demand).")
    ] = True,
) -> None:
    """Start the production shape on this machine, in the background: PostgreSQL (Debian's) for the case
    book and for the Prefect server, the Prefect server with its UI on 127.0.0.1 (basic auth), `clerk
    setup`, and N process workers that share the province sweep. `clerk down` stops it all; `clerk status`
    shows it. Registries come from the settings (CLERK_REGISTRIES; the simulators of `clerk sim` by
    default)."""
    from deployments import cluster, setup

    try:
        shape = cluster.up(
            settings(), workers, out.print, pg_port=pg_port, prefect_port=port, schedules=schedules
        )
    except setup.SetupError as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(1) from None
    out.print(f"up: Prefect UI {shape.ui_url} (user and password: `clerk status --auth`)")
    out.print(f"case book: PostgreSQL on 127.0.0.1:{shape.pg_port}, database clerk")
    out.print(
        f"start the province sweep: prefect deployment run province-sweep/province-sweep -p shards={workers} "
        f"(with PREFECT_API_URL={shape.api_url} and PREFECT_API_AUTH_STRING from `clerk status --auth`)"
    )


@app.command("down")
@friendly_errors
def down_command() -> None:
    """Stop what `clerk up` started: the workers, the Prefect server, PostgreSQL (their data stays)."""
    from deployments import cluster

    cluster.down(settings(), out.print)


@app.command("status")
@friendly_errors
def status_command(
    auth: Annotated[bool, typer.Option(help="Also print the Prefect server's user:password.")] = False,
) -> None:
    """What `clerk up` started here, and whether each part is running."""
    from deployments import cluster

    shape, states = cluster.status(settings())
    if shape is None:
        out.print("nothing was brought up here (`clerk up` starts the production shape)")
        raise typer.Exit(1)
    out.print(f"Prefect UI {shape.ui_url}; case book on PostgreSQL 127.0.0.1:{shape.pg_port}")
    for name, running in states.items():
        out.print(f"  {name:<10} pid {shape.pids[name]:<8} {'running' if running else 'STOPPED'}")
    if not states:
        out.print("  nothing running (`clerk down` was called)")
    if auth:
        out.print(f"PREFECT_API_AUTH_STRING={shape.auth}")
    if states and not all(states.values()):
        raise typer.Exit(1)


def main() -> None:
    for name, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(name, value)
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
