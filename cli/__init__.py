"""The command line (`clerk`): the top of the import order, outside the application package (`clerk`), the
one package that imports `flows` and `deployments`. One module per group of commands: `cases`, `audit` (and
reports), `runs` (what a judge runs), `ops` (serving, set-up, the database, the registries), `sim`
(simulators and the demo); `common` holds what they share, `options` the options they share (a leaf),
`whole` assembles them.

`clerk query`, `clerk deduct` and `clerk approve` alone load only themselves, `served` and `console` (typer,
rich, httpx): a judge's query, deduction or decision on a running server answers in the time its run takes,
not the seconds the rest takes to import.
"""

from __future__ import annotations

import sys
from typing import Any

#: The commands that run alone, without the rest of the command line: (module, function).
LIGHT = {
    "query": ("cli.query", "query"),
    "deduct": ("cli.deduction", "deduct"),
    "approve": ("cli.deduction", "approve"),
}


def main() -> None:
    if sys.argv[1:2] and sys.argv[1] in LIGHT:
        light_app(sys.argv[1])(prog_name="clerk")
        return
    from clerk.settings import use_prefect_defaults
    from cli.whole import app

    use_prefect_defaults()
    app()


def light_app(name: str) -> Any:
    """A command line of one light command (`LIGHT`), for the entry point."""
    import importlib

    import typer

    module, function = LIGHT[name]
    app = typer.Typer(pretty_exceptions_show_locals=False, rich_markup_mode=None, add_completion=False)

    @app.callback()
    def _clerk() -> None:
        """query-clerk: asset query and control for court enforcement bureaus."""

    app.command(name)(getattr(importlib.import_module(module), function))
    return app


def __getattr__(name: str) -> Any:  # `from cli import app` (tests, the benchmarks) loads it all
    if name in ("app", "SAMPLE_CASES", "runs", "sim"):
        import importlib

        return getattr(importlib.import_module("cli.whole"), name)
    raise AttributeError(name)
