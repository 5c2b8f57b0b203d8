"""The scheduled sweep: query every registry about every debtor that is due, record the hits, control."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Mapping
from uuid import UUID

from prefect import flow, get_run_logger, task
from prefect.artifacts import acreate_progress_artifact, aupdate_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.states import Completed, Failed
from sqlalchemy import select

from clerk import notices, querying, service, supervision
from flows import report, runtime
from models.tables import Case, utcnow


@task(cache_policy=NO_CACHE, persist_result=False, retries=0)
async def query_batch(registry: str, run_id: int, debtor_ids: list[int]) -> service.BatchResult:
    """One request to one registry about a batch of debtors (retries live in the connector)."""
    rt = runtime.current()
    return await service.query_batch(
        rt.sessions, rt.connectors[registry], rt.registry_ids[registry], run_id, debtor_ids, rt.actor
    )


@task(cache_policy=NO_CACHE, persist_result=False)
async def control_batch(case_ids: list[int]) -> service.ControlResult:
    """Plan (written down first), send and record the measures of a batch of cases."""
    rt = runtime.current()
    return await service.control_cases(
        rt.sessions, rt.connectors, case_ids, runtime.today(), rt.policy, rt.actor
    )


async def query_pages(
    rt: runtime.Runtime, run_id: int, pages: list[list[int]], progress: UUID, total: int
) -> list[service.BatchResult]:
    """Each page of debtors goes to every registry at once, in batches of the registry's size."""
    batches: list[service.BatchResult] = []
    done = 0
    for page in pages:
        calls = [
            query_batch(config.code, run_id, page[i : i + config.batch_size])
            for config in rt.settings.registries
            if config.code in rt.connectors
            for i in range(0, len(page), config.batch_size)
        ]
        batches.extend(await asyncio.gather(*calls))
        done += len(page)
        await aupdate_progress_artifact(
            progress, 100 * done / max(total, 1), description=f"{done} of {total} debtors"
        )
    return batches


@flow(name="sweep")
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

        def start() -> tuple[int, list[list[int]]]:
            with rt.sessions.begin() as session:
                run_id = querying.start_run(session, "sweep", runtime.flow_run_id())
            with rt.sessions() as session:
                due = querying.due_debtor_ids(session, utcnow(), rt.schedule, page_size, part)
                return run_id, list(due)

        run_id, pages = await asyncio.to_thread(start)
        total = sum(len(p) for p in pages)
        log.info(
            "sweep %s (shard %s): %d debtors due at %d registries", run_id, part, total, len(rt.connectors)
        )
        progress = await acreate_progress_artifact(
            0.0, key="sweep-progress", description=f"0 of {total} debtors"
        )
        batches = await query_pages(rt, run_id, pages, progress, total)
        touched = sorted(set().union(*(b.recorded.cases_with_new_hits for b in batches))) if batches else []
        resumed = await asyncio.to_thread(_terminated_cases, rt, batches, touched)
        touched = sorted({*touched, *resumed})
        result = service.ControlResult()
        if auto_control:
            for i in range(0, len(touched), 100):
                result.add(await control_batch(touched[i : i + 100]))
        failed = sum(b.failed for b in batches)
        summary = {
            "debtors": total,
            "batches": len(batches),
            "failed_lookups": failed,
            "cases_controlled": result.cases,
            "cases_resumed": len(resumed),
            "effective": result.effective,
            "frozen_fen": result.frozen_fen,
            "shard": shard,
            "shards": shards,
            "worker": os.environ.get("PREFECT__WORKER_NAME"),  # set by the worker that started this run
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }
        await report.publish("Sweep", "sweep", batches, result, [])
        await runtime.send_notices(rt)
        reasons = report.unanswered(batches)
        await asyncio.to_thread(_finish, rt, run_id, "completed" if reasons is None else "failed", summary)
        log.info("sweep %s done: %s", run_id, summary)
        if reasons is not None:
            return Failed(message=f"no registry answered: {failed} lookups failed ({reasons})", data=summary)
        return Completed(message=f"{total} debtors swept, {failed} lookups failed", data=summary)


def _finish(rt: runtime.Runtime, run_id: int, status: str, summary: Mapping[str, object]) -> None:
    with rt.sessions.begin() as session:
        querying.finish_run(session, run_id, status, dict(summary))


def _terminated_cases(
    rt: runtime.Runtime, batches: list[service.BatchResult], touched: list[int]
) -> list[int]:
    """After the queries: terminated cases with hits resume as new 执恢 cases (returned, for control);
    the applicants of the other re-queried terminated cases are told, and those of cases with new hits."""
    found: set[int] = set()
    queried: set[int] = set()
    for batch in batches:
        found |= batch.recorded.terminated_with_new_hits
        queried |= batch.recorded.terminated_queried
    with rt.sessions.begin() as session:
        resumed = supervision.resume(session, sorted(found), runtime.today(), rt.actor)
        supervision.tell_applicants_of_requery(session, sorted(queried - found), rt.actor)
        for case in session.scalars(select(Case).where(Case.id.in_(touched))):
            notices.notify(session, case, "applicant", "hits.found", {"case": case.case_number})
    return resumed
