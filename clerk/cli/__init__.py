"""The command line (`clerk`): the top of the import order, the one part of `clerk` that may import
`flows` and `deployments`. One module per group of commands: `cases`, `audit` (and reports), `runs` (what a
judge runs), `ops` (serving, set-up, the database, the registries), `sim` (simulators and the demo);
`common` holds what they share."""

from __future__ import annotations

import os

from clerk.cli import audit, cases, ops, runs, sim
from clerk.cli.common import SAMPLE_CASES, app
from clerk.settings import PREFECT_DEFAULTS

#: `clerk --help` lists what a judge runs first, then the case book, then what operators run.
ORDER = ("query", "deduct", "approve", "demo", "run", "sim", "serve", "setup", "up", "down", "status")
app.registered_commands.sort(key=lambda command: ORDER.index(command.name or ""))
app.add_typer(cases.cases_app, name="cases")
app.add_typer(ops.registries_app, name="registries")
app.add_typer(audit.audit_app, name="audit")
app.add_typer(ops.db_app, name="db")
app.add_typer(audit.report_app, name="report")


def main() -> None:
    for name, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(name, value)
    app()


__all__ = ["SAMPLE_CASES", "app", "main", "runs", "sim"]
