"""The scheduled sweep: query every registry about every debtor that is due, record the hits, control."""

from __future__ import annotations

import time

from prefect import flow, get_run_logger, task
from prefect.artifacts import acreate_progress_artifact, aupdate_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.states import Completed, Failed

from clerk import control, querying, sweeping
from clerk.store import db
from flows import report, runtime

#: The UI's progress bar moves at most this often (and at the end): each move is a call to the Prefect
#: server, and a page of a sweep takes about a second.
PROGRESS_EVERY_S = 5.0


@task(cache_policy=NO_CACHE, persist_result=False, retries=0)
async def query_batch(registry: str, run_id: int, debtor_ids: list[int]) -> querying.BatchResult:
    """One request to one registry about a batch of debtors (a case query's; retries live in the
    connector)."""
    return await querying.query_batch(runtime.current().ctx, registry, run_id, debtor_ids)


@task(cache_policy=NO_CACHE, persist_result=False, retries=0)
async def query_page(run_id: int, debtor_ids: list[int]) -> list[querying.BatchResult]:
    """A sweep's page at every registry: the requests in batches of each registry's size, all at once, and
    their answers recorded together (retries live in the connectors); the page is stamped by the sweep."""
    return await querying.query_page(runtime.current().ctx, run_id, debtor_ids)


@task(cache_policy=NO_CACHE, persist_result=False)
async def control_batch(case_ids: list[int]) -> control.Counts:
    """Plan (written down first), send and record the measures of a batch of cases."""
    return await control.control_cases(runtime.current().ctx, case_ids)


@flow(name="sweep", flow_run_name=runtime.run_name("sweep"))
async def sweep(
    registries: list[str] | None = None,
    auto_control: bool = True,
    page_size: int = 1000,
    shard: int = 0,
    shards: int = 1,
) -> State:
    """Query every registry about every debtor that is due, record each hit once, and freeze and seize
    within what is owed.

    Due: debtors of new cases not yet queried, of active cases last queried longer ago than the re-query
    interval, and of cases terminated for now that are due for their 6-monthly re-query.

    Args:
        registries: Registry codes to ask (default: every registry in the settings).
        auto_control: Place freezes and seizures after the queries (default true).
        page_size: Debtors read from the database at a time; memory stays flat whatever the total.
        shard: Which part of the debtors to sweep, from 0 (the province sweep starts one run per shard).
        shards: Into how many parts the debtors are split (1: all of them).
    """
    log = get_run_logger()
    part = querying.Shard(shard, shards)
    async with runtime.opened(registries) as rt:
        started = await db.run(
            rt.sessions, sweeping.start, rt.ctx, "sweep", runtime.flow_run_id(), rt.schedule, part
        )
        log.info(
            "sweep %s (shard %s): %d debtors due at %d registries",
            started.run_id,
            part,
            started.due,
            len(rt.ctx.registries),
        )
        bar = await acreate_progress_artifact(
            0.0, key="sweep-progress", description=f"0 of {started.due} debtors"
        )

        shown = time.monotonic()

        async def progress(done: int, total: int) -> None:
            nonlocal shown
            runtime.progress(done, total)  # a terminal that runs this sweep shows it too
            if done < total and time.monotonic() - shown < PROGRESS_EVERY_S:
                return
            shown = time.monotonic()
            await aupdate_progress_artifact(bar, 100 * done / total, description=f"{done} of {total} debtors")

        async def ask(debtor_ids: list[int]) -> list[querying.BatchResult]:
            return await query_page(started.run_id, debtor_ids)

        swept = await sweeping.sweep(
            rt.ctx,
            started,
            ask,
            control_batch if auto_control else None,
            page_size=page_size,
            progress=progress,
        )
        await report.publish("Sweep", "sweep", swept.tally, swept.control, [])
        await runtime.send_notices(rt)
        done, message = swept.outcome()
        summary = await sweeping.finish(rt.ctx, started.run_id, swept, part, **runtime.where())
        log.info("sweep %s done: %s; %s", started.run_id, message, swept.in_words())
        return (Completed if done else Failed)(message=message, data=summary)
