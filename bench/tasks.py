"""What Prefect costs, in a process of its own, for `bench/prefect_cost.py`:
`python -m bench.tasks MODE BATCH` with the settings in the environment.

The work is the sweep's first step: ask one registry about every debtor of the case book, in requests of
BATCH debtors, and record the answers. MODE `tasks` runs each request as a Prefect task inside a flow
(BATCH 1: one task per debtor); MODE `plain` runs the same coroutines with no Prefect at all. Prints one
JSON line: seconds of the work, wall seconds of the process, lookups, peak memory, CPU seconds.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from typing import Any

from sqlalchemy import select

from bench.common import status_mb
from clerk import querying
from clerk.context import Context
from clerk.settings import get_settings
from clerk.store import db
from connectors.loader import build
from models.tables import Debtor

STARTED = time.perf_counter()
IN_FLIGHT = 20  # requests at once, as the registry's connections allow


async def _work(batch: int, ask: Any) -> tuple[float, int]:
    conf = get_settings()
    sessions = db.session_factory(db.engine_for(conf.effective_database_url))
    registry = conf.registries[0]
    with sessions.begin() as session:
        registry_id = querying.ensure_registries(session, [registry])[registry.code]
        run_id = querying.start_run(session, "bench:tasks")
        ids = list(session.scalars(select(Debtor.id).order_by(Debtor.id)))
    connector = build([registry], conf.allowed_adapters)[registry.code]
    ctx = Context.of(conf, sessions, {registry.code: connector}, {registry.code: registry_id}, "bench:tasks")
    slots = asyncio.Semaphore(IN_FLIGHT)

    async def one(chunk: list[int]) -> int:
        async with slots:
            return int(await ask(ctx, registry.code, run_id, chunk))

    try:
        started = time.perf_counter()
        done = await asyncio.gather(*(one(ids[i : i + batch]) for i in range(0, len(ids), batch)))
        return time.perf_counter() - started, sum(done)
    finally:
        await connector.aclose()


async def _lookup(ctx: Context, registry: str, run_id: int, chunk: list[int]) -> int:
    result = await querying.query_batch(ctx, registry, run_id, chunk)
    return result.recorded.queried


def main() -> int:
    mode, batch = sys.argv[1], int(sys.argv[2])
    if mode == "plain":
        seconds, lookups = asyncio.run(_work(batch, _lookup))
    else:
        from prefect import flow, task
        from prefect.cache_policies import NO_CACHE

        # NO_CACHE: the task's arguments (the context: sessions, connectors) are not hashed for a cache key.
        lookup = task(name="lookup", cache_policy=NO_CACHE, persist_result=False)(_lookup)

        @flow(name="bench-tasks")
        async def tasks() -> tuple[float, int]:
            return await _work(batch, lookup)

        seconds, lookups = asyncio.run(tasks())
    usage = resource.getrusage(resource.RUSAGE_SELF)
    figures = {
        "seconds": seconds,
        "wall": time.perf_counter() - STARTED,
        "lookups": lookups,
        "peak_rss_mb": status_mb("VmHWM"),  # see bench.common.status_mb: never ru_maxrss
        "cpu_s": usage.ru_utime + usage.ru_stime,
    }
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
