"""The whole command line, assembled: every group of commands on the root app, in the order `clerk --help`
lists them."""

from __future__ import annotations

from cli import audit, cases, money, ops, runs, sim
from cli.common import SAMPLE_CASES, app

#: `clerk --help` lists what a judge runs first, then the case book, then what operators run.
ORDER = ("query", "deduct", "approve", "demo", "run", "sim", "serve", "setup", "up", "down", "status")
app.registered_commands.sort(key=lambda command: ORDER.index(command.name or ""))
app.add_typer(cases.cases_app, name="cases")
app.add_typer(money.money_app, name="money")
app.add_typer(ops.registries_app, name="registries")
app.add_typer(audit.audit_app, name="audit")
app.add_typer(ops.db_app, name="db")
app.add_typer(audit.report_app, name="report")

__all__ = ["SAMPLE_CASES", "app", "runs", "sim"]
