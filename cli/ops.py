"""Operating the clerk: `clerk serve`, `setup`, `up`, `down`, `status`, `db upgrade` and
`clerk registries`."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from clerk.settings import Settings
from clerk.store import db
from clerk.supervision.scoreboard import registry_scoreboard
from cli.common import app, err, friendly_errors, out, settings, unit_of_work
from connectors import loader
from connectors.base import Health
from deployments import catalog
from models.scoreboard import COLUMNS, Score
from models.values import InvalidValue

db_app = typer.Typer(help="Manage the database schema.", no_args_is_help=True)


registries_app = typer.Typer(
    help="The registries in use: list them and check their health.", no_args_is_help=True
)


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


@registries_app.command("report")
@friendly_errors
def registries_report(
    hours: Annotated[
        int, typer.Option(min=1, max=24 * 31, help="The window: requests sent in the last N hours.")
    ] = 24,
    ahead: Annotated[
        int,
        typer.Option(
            min=0,
            max=72,
            help="Judge the requests still open as they will stand N hours from now if nothing more is "
            "answered: who breaks the rule by then.",
        ),
    ] = 0,
) -> None:
    """The 24-hour rule, per registry: requests sent in the window, lookups answered and their answer times
    (p50, p95), answers later than 24 h, requests still open after 24 h (whenever sent), refusals and
    invalid answers. Exit 1 when a registry broke the rule (or will have, with --ahead)."""
    now = dt.datetime.now(dt.UTC)
    with unit_of_work() as session:
        scores = registry_scoreboard(
            session, now - dt.timedelta(hours=hours), now, now + dt.timedelta(hours=ahead)
        )
    title = f"registries, last {hours} h; the rule: answer within 24 h (late, open: past 24 h)"
    if ahead:
        title += f"\nas they will stand in {ahead} h if nothing more is answered"
    if not print_scoreboard(scores, title):
        raise typer.Exit(1)


_SHORT = {"requests": "sent", "late >24 h": "late", "open >24 h": "open"}


def print_scoreboard(scores: list[Score], title: str) -> bool:
    """The scoreboard as a table, and a line naming the registries that broke the rule; True if none did."""
    table = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False, title_justify="left")
    for i, column in enumerate(COLUMNS):  # short headers: the table fits 80 columns
        header = _SHORT.get(column, column)
        table.add_column(header, min_width=len(header), no_wrap=i == 0, justify="left" if i == 0 else "right")
    for s in scores:
        table.add_row(*(str(v) for v in s.as_row().values()))
    out.print(table)
    for legend in (  # each within 80 columns, wherever it is printed
        "sent: lookups and control requests; answered: lookups, p50/p95 their time;",
        "late: answered after 24 h; open: unanswered 24 h after sending; refused:",
        "lookups failed and control requests refused; invalid: answers that don't add up",
    ):
        out.print(legend)
    late = [s.registry for s in scores if not s.kept_the_rule]
    if late:
        err.print(f"late: {', '.join(late)} (answers after 24 h, or requests still open after 24 h)")
    return not late


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


@app.command("serve")
@friendly_errors
def serve_command(
    port: Annotated[
        int | None, typer.Option(help="Port of the Prefect server to start (CLERK_PREFECT_PORT).")
    ] = None,
    host: Annotated[
        str,
        typer.Option(
            help="Address the Prefect server listens on; beyond 127.0.0.1 only with "
            "PREFECT_SERVER_API_AUTH_STRING set (and TLS in front: docs/runbook.md)."
        ),
    ] = "127.0.0.1",
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

    names = [d.name for d in catalog.SERVED]
    unknown = [name for name in only or [] if name not in names]
    if unknown:
        raise InvalidValue("--only", f"{unknown[0]!r} is not a deployment: use one of {', '.join(names)}")
    conf = settings()
    with embedded.prefect_server(port or conf.prefect_port, out.print, host=host) as api_url:
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
    host: Annotated[
        str,
        typer.Option(
            help="Address the Prefect server listens on (it always has basic auth; put TLS in front)."
        ),
    ] = "127.0.0.1",
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
            settings(), workers, out.print, pg_port=pg_port, prefect_port=port, schedules=schedules, host=host
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


async def _health(conf: Settings) -> list[Health]:
    connectors = loader.build(conf.registries, conf.allowed_adapters)
    try:
        return list(await asyncio.gather(*(c.health() for c in connectors.values())))
    finally:
        await asyncio.gather(*(c.aclose() for c in connectors.values()))
