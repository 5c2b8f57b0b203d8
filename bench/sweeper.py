"""One sweep in a process of its own, for `bench/sweep.py`: `python -m bench.sweeper [DAYS_LATER]` with the
settings in the environment (CLERK_DATABASE_URL, CLERK_REGISTRIES). It runs the sweep's use cases
(`sweeping.sweep_due`: the flow's pages and steps, without Prefect) as if DAYS_LATER days had passed (31:
every debtor is due again: a re-sweep). Prints one JSON line: the sweep's seconds, lookups, hits and measures,
and this process's peak memory and CPU seconds; on standard error, every `PROGRESS_S` seconds, how far it is,
its rate so far and its memory now (a large sweep runs for an hour: its memory over time shows if it grows).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import resource
import sys
import time
from typing import Any

from bench.common import status_mb
from clerk import control, db, querying, sweeping
from clerk.settings import get_settings
from connectors.loader import build
from models.tables import utcnow

PROGRESS_S = 60.0


async def _sweep(later_days: int = 0) -> dict[str, Any]:
    conf = get_settings()
    sessions = db.session_factory(db.engine_for(conf.effective_database_url))
    connectors = build(conf.registries, conf.allowed_adapters)
    with sessions.begin() as session:
        registry_ids = querying.ensure_registries(session, conf.registries)
    policy = control.Policy(auto_freeze=conf.auto_freeze, auto_seize=frozenset(conf.auto_seize))
    schedule = querying.Schedule(conf.requery_days, conf.terminated_requery_days, conf.terminated_years)
    started = time.perf_counter()
    last = started

    async def progress(done: int, due: int) -> None:
        nonlocal last
        now = time.perf_counter()
        if now - last >= PROGRESS_S or done == due:
            last = now
            line = {
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
            sessions,
            connectors,
            {c.code: c.batch_size for c in conf.registries},
            registry_ids,
            utcnow() + dt.timedelta(days=later_days),
            schedule,
            policy,
            "bench:sweep",
            progress=progress,
        )
        seconds = time.perf_counter() - started
    finally:
        await asyncio.gather(*(c.aclose() for c in connectors.values()))
    return {
        "seconds": seconds,
        "lookups": swept.tally.total("queried") - swept.tally.total("failed"),
        "failed": swept.tally.total("failed"),
        "hits": swept.tally.total("hits"),
        "effective": swept.control.effective,
    }


def main() -> int:
    if len(sys.argv) > 2 or (len(sys.argv) == 2 and not sys.argv[1].isdigit()):
        print("usage: python -m bench.sweeper [DAYS_LATER]", file=sys.stderr)
        return 2
    figures = asyncio.run(_sweep(int(sys.argv[1]) if len(sys.argv) == 2 else 0))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    figures["peak_rss_mb"] = status_mb("VmHWM")  # see bench.common.status_mb: never ru_maxrss
    figures["cpu_s"] = usage.ru_utime + usage.ru_stime
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
