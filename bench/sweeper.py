"""One sweep in a process of its own, for `bench/sweep.py`: `python -m bench.sweeper [DAYS_LATER] [--shard
K/N] [--flow]` with the settings in the environment (CLERK_DATABASE_URL, CLERK_REGISTRIES). It runs the
sweep's use cases (`sweeping.sweep_due`: the flow's pages and steps, without Prefect) as if DAYS_LATER days
had passed (31: every debtor is due again: a re-sweep); with `--shard K/N`, shard K of N only (1-based, as
the province sweep names them), so that N processes sweep the case book side by side. With `--flow`, the
sweep flow itself (`flows.sweep`, its tasks and artifacts) runs in this process against the Prefect server
PREFECT_API_URL names, as a worker runs it (a first sweep only: the flow sweeps what is due now).
Prints one JSON line: the sweep's seconds, lookups, hits and measures, and this process's peak memory and
CPU seconds; on standard error, every `PROGRESS_S` seconds, how far it is, its rate so far and its memory
now (a large sweep runs for an hour: its memory over time shows if it grows).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib
import json
import resource
import sys
import time
from typing import Any, cast

from sqlalchemy import select

from bench.common import read_calls, status_mb
from clerk import querying, sweeping
from clerk.context import Context
from clerk.settings import get_settings
from clerk.store import db
from connectors.loader import build
from models.tables import QueryRun, utcnow
from models.values import InvalidValue

PROGRESS_S = 60.0


async def _sweep(later_days: int = 0, shard: querying.Shard = sweeping.EVERY_DEBTOR) -> dict[str, Any]:
    conf = get_settings()
    sessions = db.session_factory(db.engine_for(conf.effective_database_url))
    connectors = build(conf.registries, conf.allowed_adapters)
    with sessions.begin() as session:
        registry_ids = querying.ensure_registries(session, conf.registries)
    ctx = Context.of(conf, sessions, connectors, registry_ids, "bench:sweep")
    schedule = querying.Schedule(conf.requery_days, conf.terminated_requery_days, conf.terminated_years)
    began = time.time()  # on the wall clock, for sweepers side by side (bench.sweep.sweep_once)
    started = time.perf_counter()
    last = started

    async def progress(done: int, due: int) -> None:
        nonlocal last
        now = time.perf_counter()
        if now - last >= PROGRESS_S or done == due:
            last = now
            line = {
                "shard": f"{shard.index + 1}/{shard.count}",
                "debtors": done,
                "due": due,
                "s": round(now - started, 1),
                "rss_mb": round(status_mb("VmRSS"), 1),
            }
            print(
                json.dumps(line | {"debtors/s": round(done / (now - started), 1)}),
                file=sys.stderr,
                flush=True,
            )

    try:
        swept = await sweeping.sweep_due(
            ctx.at(utcnow() + dt.timedelta(days=later_days)), schedule, progress=progress, shard=shard
        )
        seconds = time.perf_counter() - started
    finally:
        await asyncio.gather(*(c.aclose() for c in connectors.values()))
    return {
        "seconds": seconds,
        "began": began,
        "ended": began + seconds,
        "lookups": swept.tally.total("queried") - swept.tally.total("failed"),
        "failed": swept.tally.total("failed"),
        "hits": swept.tally.total("hits"),
        "effective": swept.control.effective,
    }


async def _flow(shard: querying.Shard) -> dict[str, Any]:
    from deployments.forkserver import PRELOAD
    from flows.sweep import sweep as sweep_flow

    # What a served run's process has imported before its run starts (the fork server's preload): a run
    # is timed from its start, as the plain sweep is, not from its interpreter's.
    for module in PRELOAD[1:]:
        importlib.import_module(module)
    began = time.time()
    started = time.perf_counter()
    state = await sweep_flow(shard=shard.index, shards=shard.count, return_state=True)
    seconds = time.perf_counter() - started
    summary = cast(dict[str, int], await state.aresult())
    registries = len(get_settings().registries)
    return {
        "seconds": seconds,
        "began": began,
        "ended": began + seconds,
        "lookups": summary["debtors"] * registries - summary["failed_lookups"],
        "failed": summary["failed_lookups"],
        "hits": 0,  # the flow keeps counts of measures, not of hits
        "effective": summary["effective"],
    }


def _edges(figures: dict[str, Any]) -> dict[str, Any]:
    """Where the time went around the sweep proper: from the timer's start to the sweep's run being recorded
    (`sweeping.start`: for the flow, Prefect's start of the run and `runtime.opened`), and from the run's
    end being recorded (`sweeping.finish`) to the timer's end (the flow's report, notices and end)."""
    sessions = db.session_factory(db.engine_for(get_settings().effective_database_url))
    with sessions() as session:
        run = session.scalars(select(QueryRun).order_by(QueryRun.id.desc()).limit(1)).one()
    assert run.finished_at is not None

    def stamp(moment: dt.datetime) -> float:  # SQLite gives the UTC time back without its zone
        return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).timestamp()

    return figures | {
        "before_s": round(stamp(run.started_at) - figures["began"], 3),
        "after_s": round(figures["ended"] - stamp(run.finished_at), 3),
    }


def _shard(text: str) -> querying.Shard:
    index, _, count = text.partition("/")
    if not (index.isdigit() and count.isdigit() and 1 <= int(index) <= int(count)):
        raise argparse.ArgumentTypeError(f"{text!r} is not K/N with K from 1 to N, e.g. 1/2")
    try:
        return querying.Shard(int(index) - 1, int(count))
    except InvalidValue as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sweeper", description=__doc__)
    parser.add_argument("days_later", nargs="?", type=int, default=0, help="as if this many days passed")
    parser.add_argument("--shard", type=_shard, default=sweeping.EVERY_DEBTOR, help="K/N: shard K of N")
    parser.add_argument("--flow", action="store_true", help="run the sweep flow (Prefect) instead")
    args = parser.parse_args()
    if args.flow and args.days_later:
        parser.error("--flow sweeps what is due now: no DAYS_LATER")
    figures = _edges(asyncio.run(_flow(args.shard) if args.flow else _sweep(args.days_later, args.shard)))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    figures["peak_rss_mb"] = status_mb("VmHWM")  # see bench.common.status_mb: never ru_maxrss
    figures["cpu_s"] = usage.ru_utime + usage.ru_stime
    figures["read_calls"] = read_calls()
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
