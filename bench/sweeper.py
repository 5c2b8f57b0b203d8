"""One sweep in a process of its own, for `bench/sweep.py`: `python -m bench.sweeper MODE [DAYS_LATER]`
with the settings in the environment (CLERK_DATABASE_URL, CLERK_REGISTRIES). Prints one JSON line: the sweep's
seconds, lookups, hits and measures, and this process's peak memory.

MODE `plain` runs the sweep's use cases (`service.sweep_due`), as if DAYS_LATER days had passed (31: every
debtor is due again: a re-sweep); `flow` runs the Prefect flow `sweep` (with
Prefect's temporary in-process server; the seconds count from the flow's first line, `wall` from the
call).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import resource
import sys
import time
from typing import Any

from sqlalchemy import select

from clerk import control, db, querying, service
from clerk.settings import get_settings
from connectors.loader import build
from models.tables import QueryRun, utcnow


async def _plain(later_days: int = 0) -> dict[str, Any]:
    conf = get_settings()
    sessions = db.session_factory(db.engine_for(conf.effective_database_url))
    connectors = build(conf.registries, conf.allowed_adapters)
    with sessions.begin() as session:
        registry_ids = querying.ensure_registries(session, conf.registries)
    policy = control.Policy(auto_freeze=conf.auto_freeze, auto_seize=frozenset(conf.auto_seize))
    schedule = querying.Schedule(conf.requery_days, conf.terminated_requery_days, conf.terminated_years)
    try:
        started = time.perf_counter()
        batches, result = await service.sweep_due(
            sessions,
            connectors,
            {c.code: c.batch_size for c in conf.registries},
            registry_ids,
            utcnow() + dt.timedelta(days=later_days),
            schedule,
            policy,
            "bench:sweep",
        )
        seconds = time.perf_counter() - started
    finally:
        await asyncio.gather(*(c.aclose() for c in connectors.values()))
    return {
        "seconds": seconds,
        "lookups": sum(b.recorded.queried for b in batches),
        "failed": sum(b.failed for b in batches),
        "hits": sum(b.recorded.hits for b in batches),
        "effective": result.effective,
    }


def _flow() -> dict[str, Any]:
    from flows import runtime
    from flows.sweep import sweep

    started = time.perf_counter()
    state = runtime.run(sweep(return_state=True))
    wall = time.perf_counter() - started
    summary = state.result(raise_on_failure=False) if state.is_completed() else {}
    conf = get_settings()
    sessions = db.session_factory(db.engine_for(conf.effective_database_url))
    with sessions() as session:
        run = session.scalars(select(QueryRun).order_by(QueryRun.id.desc()).limit(1)).one()
        assert run.finished_at is not None, "the sweep did not finish"
        seconds = (run.finished_at - run.started_at).total_seconds()
    return {
        "seconds": seconds,
        "wall": wall,
        "lookups": summary.get("debtors", 0) * len(conf.registries) if isinstance(summary, dict) else 0,
        "failed": summary.get("failed_lookups", 0) if isinstance(summary, dict) else 0,
        "effective": summary.get("effective", 0) if isinstance(summary, dict) else 0,
        "state": state.name,
    }


def main() -> int:
    mode = sys.argv[1] if len(sys.argv) > 1 else "plain"
    if mode not in ("plain", "flow"):
        print(f"usage: python -m bench.sweeper plain [DAYS_LATER] | flow (not {mode!r})", file=sys.stderr)
        return 2
    later = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    figures = asyncio.run(_plain(later)) if mode == "plain" else _flow()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    figures["peak_rss_mb"] = usage.ru_maxrss / 1024
    figures["cpu_s"] = usage.ru_utime + usage.ru_stime
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
