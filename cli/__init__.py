"""The command line (`clerk`): the top of the import order, outside the application package (`clerk`), the
one package that imports `flows` and `deployments`. One module per group of commands: `cases`, `audit` (and
reports), `runs` (what a judge runs), `ops` (serving, set-up, the database, the registries), `sim`
(simulators and the demo); `common` holds what they share, `options` the options they share (a leaf),
`whole` assembles them.

`clerk query` and `clerk approve` alone load only themselves, `served` and `console` (typer, rich, httpx): a
judge's query or decision on a running server answers in the time its run takes, not the seconds the rest
takes to import.
"""

from __future__ import annotations

import sys
from typing import Any


def main() -> None:
    if sys.argv[1:2] == ["query"]:
        from cli.query import light_app

        light_app()(prog_name="clerk")
        return
    if sys.argv[1:2] == ["approve"]:
        from cli.approve import light_app as approve_app

        approve_app()(prog_name="clerk")
        return
    from clerk.settings import use_prefect_defaults
    from cli.whole import app

    use_prefect_defaults()
    app()


def __getattr__(name: str) -> Any:  # `from cli import app` (tests, the benchmarks) loads it all
    if name in ("app", "SAMPLE_CASES", "runs", "sim"):
        import importlib

        return getattr(importlib.import_module("cli.whole"), name)
    raise AttributeError(name)
