"""`clerk sim` (the registry simulators) and `clerk demo` (the main job on the embedded default)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from clerk.casebook import casefile, cases
from clerk.money.view import BureauMoney
from clerk.store import audit, tree
from clerk.supervision.scoreboard import registry_scoreboard
from cli.cases import import_file
from cli.common import SAMPLE_CASES, app, err, friendly_errors, out, sessions, settings, unit_of_work
from cli.ops import print_scoreboard
from cli.options import SeedOption
from connectors.simulator import serve as simulator_serve
from connectors.simulator.faults import FaultPlan
from connectors.simulator.world import case_rows
from models.money import Account
from models.values import InvalidValue, format_yuan


@app.command("sim")
@friendly_errors
def sim(
    debtors: Annotated[
        int, typer.Option(min=1, max=5_000_000, help="How many debtors the world holds (the demo's 2,000).")
    ] = 2_000,
    seed: SeedOption = 1,
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
        world = simulator_serve.build_world(
            conf.registries, debtors, seed, now, plan, conf.notifier_url, conf.court_bank_url
        )
    held = ", ".join(f"{code} {count:,}" for code, count in world.holdings.items())
    out.print(f"{debtors:,} debtors (seed {seed}) in {world.seconds:.1f} s; holdings: {held}")
    if write_cases is not None:
        rows = casefile.write_case_file(write_cases, case_rows(world.debtors, seed, now.date()))
        out.print(f"case file for these debtors: {write_cases} ({rows:,} rows)")

    def ready() -> None:
        for simulator, host, port in world.simulators:
            out.print(f"  {simulator.code:<12} {simulator.kind:<12} http://{host}:{port}")
        if world.sms_at is not None:
            out.print(f"  {'sms-gateway':<12} {'notices':<12} http://{world.sms_at[0]}:{world.sms_at[1]}")
        if world.court_bank_at is not None:
            host, port = world.court_bank_at
            out.print(f"  {'court-bank':<12} {'case money':<12} http://{host}:{port}")
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


@app.command("demo")
@friendly_errors
def demo(
    debtors: Annotated[
        int, typer.Option(min=10, max=200_000, help="Debtors in the simulated world.")
    ] = 2_000,
    seed: SeedOption = 1,
    file: Annotated[Path, typer.Option(help="Sample cases imported as well.")] = SAMPLE_CASES,
    slow: Annotated[
        list[str] | None,
        typer.Option(
            help="A registry that answers a tenth of its requests only later, to see the 24-hour rule's "
            "scoreboard catch it (repeat for more; default vehicles; --slow none for none)."
        ),
    ] = None,
) -> None:
    """The main job on the embedded default: simulators for every registry, the sample cases and a seeded
    world of debtors imported, one sweep (query, record, freeze and seize within the cap), the audit log
    signed, and a report with the registries' scoreboard."""
    from deployments import embedded

    conf = settings()
    out.print(f"database: {conf.database_display}")

    def import_and_say(path: Path) -> None:
        report = import_file(path, audit.Actor.SYSTEM)
        out.print(
            f"imported {path.name}: {report.cases_added:,} new case(s), {report.cases_unchanged:,} known"
        )

    slow_codes = [c for c in (slow or ["vehicles"]) if c != "none"]
    r = embedded.run_demo(file, debtors, seed, out.print, import_and_say, slow_codes)
    sealed = tree.seal(sessions(), conf)
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
        ("measures awaiting an answer", f"{r.unconfirmed:,}"),
        ("audit log", f"{sealed.size:,} events under a signed head"),
    ):
        table.add_row(label, value)
    out.print(table)
    out.print(f"sweep: {r.sweep_message}")
    if r.money is not None:
        _print_money(r.money, r.money_messages)
    out.print(f"demo done in {r.seconds:.1f} s")
    if sealed.head is not None:
        out.print(f"audit log's signed head: {sealed.head.short} (`clerk audit verify` checks it)")
    if slow_codes:
        now = dt.datetime.now(dt.UTC)
        with unit_of_work() as session:
            scores = registry_scoreboard(
                session, now - dt.timedelta(hours=1), now, now + dt.timedelta(hours=25)
            )
        print_scoreboard(
            [s for s in scores if s.requests],
            "the 24-hour rule tomorrow, if nothing more is answered (late, open: past 24 h)",
        )
    out.print(
        "next: `clerk serve` starts the Prefect UI (http://127.0.0.1:4200) with the scheduled deployments;"
    )
    if r.paid_by_transfer is not None:
        out.print(
            f"      `clerk money show '{r.paid_by_transfer}'`: a case its debtor paid in full by transfer."
        )
    with unit_of_work() as session:
        example = cases.example_case(session)
    if example is not None:
        out.print(
            f"      with `clerk sim --debtors {debtors} --seed {seed}` running (the same world), "
            f"`clerk query '{example.case_number}' --requested-by {example.judge} --dry-run` has the case's "
            "judge ask every registry about it."
        )


def _print_money(money: BureauMoney, messages: tuple[str, ...]) -> None:
    def lines(found: tuple[int, int]) -> str:
        return f"{found[0]:,} line(s), {format_yuan(found[1])} yuan"

    held = money.held
    table = Table("", "", title="case money (案款), one sub-account per case", show_header=False)
    for label, value in (
        ("from deductions judges approved", lines(money.from_deductions)),
        ("debtors' own transfers", lines(money.transfers)),
        ("split: fee and costs", f"{format_yuan(held.get(Account.FEES, 0))} yuan"),
        ("split: owed to applicants", f"{format_yuan(held.get(Account.APPLICANT, 0))} yuan"),
        ("split: refundable to debtors", f"{format_yuan(held.get(Account.REFUNDABLE, 0))} yuan"),
        (
            "unidentified (不明款), waiting",
            f"{format_yuan(money.waiting_fen)} yuan: `clerk money unidentified`",
        ),
    ):
        table.add_row(label, value)
    out.print(table)
    for message in messages[-1:]:
        out.print(message)
