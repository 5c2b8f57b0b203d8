"""The terminal's two consoles, and how a case sheet's rows are shown on them. Light (rich alone): `clerk
query` prints through this without loading the rest of the command line."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

# Markup off: names, case numbers and registry text are data, never rich markup ("[/]" must not crash a
# table, "[bold]" must not change what is shown). On a terminal, a line longer than the terminal is wrapped
# between words (a terminal left alone splits "24,094.66" or a word at its edge); elsewhere (a pipe, a file,
# a log) each line is written whole. What machines read (JSON, CSV) is printed with `soft_wrap=True`.
out = Console(highlight=False, markup=False)
err = Console(stderr=True, highlight=False, markup=False)
for _console in (out, err):
    _console.soft_wrap = not _console.is_terminal


@contextlib.contextmanager
def light_errors() -> Iterator[None]:
    """A light command's errors (`clerk query`, `clerk deduct`, `clerk approve`), one line each: what the
    user typed (`InvalidValue`, or the run's refusal `served.RunRefused`: exit 2), or the Prefect server
    (`served.ServerError`, exit 1)."""
    import typer

    from cli.served import RunRefused, ServerError
    from models.values import InvalidValue

    try:
        yield
    except (InvalidValue, RunRefused) as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(2) from None
    except ServerError as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(1) from None


def print_standing(title: str, rows: Iterable[tuple[str, str]]) -> None:
    """What a case owes today and how our freezes stand against it: (label, yuan) rows."""
    standing = Table(show_header=False, box=box.SIMPLE, title=title)
    standing.add_column("", overflow="fold")
    standing.add_column("yuan", justify="right")
    for label, amount in rows:
        standing.add_row(label, amount)
    out.print(standing)


def print_assets(rows: Iterable[Mapping[str, str]]) -> None:
    """A case sheet's assets (`models.casesheet.Sheet.asset_rows`), one table per debtor, 80 columns: what
    we hold on each, or why we hold nothing, and who is ahead of us."""
    rows = list(rows)
    for debtor in dict.fromkeys(row["debtor"] for row in rows):
        assets = Table(
            "registry", "asset", "balance", title=f"assets of debtor {debtor}", box=box.SIMPLE_HEAD
        )
        assets.add_column("held by us, or why not", overflow="fold")
        for row in rows:
            if row["debtor"] == debtor:
                held = row["ours"] + (f"\nahead of us: {row['ahead']}" if row["ahead"] else "")
                assets.add_row(row["registry"], row["asset"], row["balance"], held)
        out.print(assets)
    if not rows:
        out.print("assets found: none yet")


def print_headline(headline: str) -> None:
    out.print(Text(headline, style="bold"))
