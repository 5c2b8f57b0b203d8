"""The province sweep: the debtors split into shards, each swept by its own flow run of the `sweep-shard`
deployment on whichever worker of the pool takes it, within the registries' global rate limits; this parent
run waits for them, takes over a shard whose run failed or crashed, and gathers their counts into one report.

A shard run that crashed half-way is safe to run again: debtors it had asked are no longer due (lookups
sent and never answered are), and measures are planned under the case's lock against what is already held,
so nothing is frozen twice.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_table_artifact
from prefect.client.schemas.objects import FlowRun, State
from prefect.deployments.flow_runs import arun_deployment
from prefect.states import Completed, Failed

from clerk import querying
from clerk.settings import get_settings
from clerk.store import db
from flows import runtime
from models.values import InvalidValue, format_yuan

SHARD_DEPLOYMENT = "sweep/sweep-shard"
COUNTS = ("debtors", "failed_lookups", "cases_controlled", "effective", "frozen_fen")


@dataclass
class ShardOutcome:
    shard: int
    runs: list[FlowRun] = field(default_factory=list)
    summary: dict[str, Any] | None = None

    @property
    def completed(self) -> bool:
        last = self.runs[-1].state if self.runs else None
        return bool(last and last.is_completed())


async def _sweep_shard(
    shard: int, shards: int, parameters: dict[str, Any], takeovers: int, poll_s: float
) -> ShardOutcome:
    log = get_run_logger()
    outcome = ShardOutcome(shard)
    for attempt in range(1 + takeovers):
        name = f"shard {shard + 1} of {shards}" + (f", take-over {attempt}" if attempt else "")
        run = await arun_deployment(
            SHARD_DEPLOYMENT,
            parameters=parameters | {"shard": shard, "shards": shards},
            flow_run_name=name,
            timeout=None,
            poll_interval=poll_s,
        )
        outcome.runs.append(run)
        if outcome.completed:
            return outcome
        state = run.state.name if run.state else "no state"
        log.warning("%s ended %s (%s)", name, state, run.state.message if run.state else "")
    return outcome


def _summaries(flow_run_ids: list[str]) -> dict[str, dict[str, Any]]:
    sessions = db.session_factory(db.engine_for(get_settings().effective_database_url))
    return db.reading(sessions, querying.run_summaries, flow_run_ids)


def _where(summary: dict[str, Any]) -> str:
    if "host" not in summary:
        return "-"
    worker = summary.get("worker") or "no worker"
    return f"{worker} on {summary['host']} (pid {summary['pid']})"


def _rows(outcomes: list[ShardOutcome], shards: int) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for o in outcomes:
        s = o.summary or {}
        last = o.runs[-1] if o.runs else None
        rows.append(
            {
                "shard": f"{o.shard + 1} of {shards}",
                "runs": len(o.runs),
                "state": last.state.name if last and last.state else "-",
                "flow run": last.name if last else "-",
                "ran on": _where(s),
                "debtors": s.get("debtors", 0),
                "failed lookups": s.get("failed_lookups", 0),
                "cases controlled": s.get("cases_controlled", 0),
                "measures effective": s.get("effective", 0),
                "frozen (yuan)": format_yuan(int(s.get("frozen_fen", 0))),
            }
        )
    return rows


@flow(name="province-sweep", flow_run_name=runtime.run_name("province-sweep"))
async def province_sweep(
    shards: int = 4,
    registries: list[str] | None = None,
    auto_control: bool = True,
    takeovers: int = 2,
    poll_s: float = 2.0,
) -> State:
    """Sweep every due debtor as `shards` flow runs of the sweep-shard deployment, spread over the work
    pool's workers, and gather their counts into one report (artifact `province-sweep`).

    Args:
        shards: Into how many parts the debtors are split (each debtor is in one part, always the same).
        registries: Registry codes to ask (default: every registry in the settings).
        auto_control: Place freezes and seizures after the queries (default true).
        takeovers: How many times a shard whose run failed or crashed is started again.
        poll_s: How often the state of the shard runs is read.
    """
    querying.Shard(0, shards)  # the count is checked before any run starts
    if takeovers < 0:
        raise InvalidValue("takeovers", f"must be 0 or more, not {takeovers}")
    runtime.check_registries(registries)
    log = get_run_logger()
    parameters = {"registries": registries, "auto_control": auto_control}
    outcomes = list(
        await asyncio.gather(*(_sweep_shard(k, shards, parameters, takeovers, poll_s) for k in range(shards)))
    )
    ids = [str(o.runs[-1].id) for o in outcomes if o.completed]
    summaries = await asyncio.to_thread(_summaries, ids)
    for o in outcomes:
        o.summary = summaries.get(str(o.runs[-1].id)) if o.completed else None
    rows = _rows(outcomes, shards)
    await acreate_table_artifact(rows, key="province-sweep", description="Province sweep: shards")
    totals = {k: sum(int((o.summary or {}).get(k, 0)) for o in outcomes) for k in COUNTS}
    totals |= {"shards": shards, "runs": sum(len(o.runs) for o in outcomes)}
    lost = [o.shard + 1 for o in outcomes if not o.completed]
    log.info("province sweep: %s", totals)
    if lost:
        return Failed(
            message=f"shard(s) {', '.join(map(str, lost))} of {shards} did not complete after "
            f"{1 + takeovers} runs each",
            data=totals,
        )
    return Completed(message=f"{totals['debtors']} debtors swept in {shards} shards", data=totals)
