"""Registry faults at 10 %, 20 % and 30 % of calls (timeouts, 5xx, 429, garbage, late answers, replies lost
after the registry applied a freeze), during sweeps and on-demand case queries, without Prefect, against the
simulators over real HTTP. Afterwards, once the faults stop and the clerk's next runs catch up: every hit the
simulators hold is recorded exactly once, every measure in their ledgers is in our records and every measure
we hold in force is in theirs, nothing is left unconfirmed, and no case holds more than it owes."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from clerk import control, querying, sweeping
from clerk.casebook import cases
from clerk.casebook.casefile import read_case_file
from clerk.casebook.intake import import_cases
from connectors.loader import build
from connectors.simulator.faults import FaultPlan
from models.supervision import bureau_today
from models.tables import Asset, Case, ControlMeasure
from tests.fakes import context_for
from tests.world import World, served_world

NOW = dt.datetime.now(dt.UTC)
ACTOR = "flow-run:faults"
ALLOWED = ["bank-json", "real-estate-xml", "vehicle-json"]


def plan(rate: float, seed: int) -> FaultPlan:
    """`rate` of calls fail, in the proportions registries show them."""
    return FaultPlan(
        seed=seed,
        error=rate * 0.35,
        throttle=rate * 0.2,
        garbage=rate * 0.15,
        later=rate * 0.12,
        lost=rate * 0.12,
        slow=rate * 0.06,
        slow_s=1.5,  # beyond the registries' 1 s timeout below
        retry_after_s=0.01,
    )


async def catch_up(
    sessions: sessionmaker[Session], world: World, registry_ids: dict[str, int]
) -> Counter[str]:
    """With faults on: a sweep and case queries. Then faults off, and the runs that follow."""
    connectors = build(world.configs, ALLOWED)
    ctx = context_for(sessions, connectors, world.configs, at=NOW, actor=ACTOR)
    seen: Counter[str] = Counter()
    try:
        swept = await sweeping.sweep_due(ctx, querying.Schedule())
        seen["failed lookups under faults"] = swept.tally.total("failed")
        with sessions() as session:
            some = list(session.scalars(select(Case.id).order_by(Case.id).limit(8)))
            debtors = {c: querying.debtor_ids_of_case(session, c) for c in some}
            run_id = querying.start_run(session, "case-query")
            session.commit()
        for case_id in some:  # on-demand case queries, faults still on
            for code in ctx.registries:
                await querying.query_batch(ctx, code, run_id, debtors[case_id])
            await control.control_cases(ctx, [case_id])
        for sim in world.simulators.values():
            sim.faults = FaultPlan()
    finally:
        await asyncio.gather(*(c.aclose() for c in connectors.values()))
    for _ in range(2):  # the next scheduled sweeps and collects: new runs, new clients (breakers closed)
        connectors = build(world.configs, ALLOWED)
        try:
            ctx = context_for(sessions, connectors, world.configs, actor=ACTOR)
            await sweeping.sweep_due(ctx, querying.Schedule())
            await querying.collect_queries(ctx)
            await control.resolve_unconfirmed(ctx, dt.datetime.now(dt.UTC))
        finally:
            await asyncio.gather(*(c.aclose() for c in connectors.values()))
    seen["registry requests"] = sum(sim.requests_seen for sim in world.simulators.values())
    return seen


@pytest.mark.parametrize(
    ("rate", "debtors"),
    [(0.1, 100), (0.2, 100), (0.3, 100), pytest.param(0.3, 1500, marks=pytest.mark.long)],
)
def test_faults_lose_nothing_repeat_nothing_and_keep_the_cap(
    sessions: sessionmaker[Session], tmp_path: Path, rate: float, debtors: int
) -> None:
    with served_world(tmp_path, debtors=debtors, seed=31, now=NOW, timeout_s=1.0) as world:
        plans = [plan(rate, seed=int(rate * 100) + i) for i in range(len(world.simulators))]
        for sim, fault_plan in zip(world.simulators.values(), plans, strict=True):
            sim.faults = fault_plan
        rows, _ = read_case_file(world.case_file, max_bytes=10**8, today=NOW.date())
        with sessions.begin() as session:
            import_cases(session, rows, actor=ACTOR)
            registry_ids = querying.ensure_registries(session, world.configs)
        seen = asyncio.run(catch_up(sessions, world, registry_ids))
        ledger = world.ledger_measures()
        today = bureau_today()
        with sessions() as session:
            assert session.scalar(select(func.count()).select_from(Asset)) == world.holdings_of_debtors()
            ours = {m.idempotency_key: m for m in session.scalars(select(ControlMeasure))}
            assert set(ledger) <= set(ours), "every measure a registry holds is in our records"
            in_force = {k for k, m in ours.items() if m.status in ("effective", "queued")}
            assert in_force <= set(ledger), "every measure we hold in force is held by a registry"
            assert not [k for k, m in ours.items() if m.status == "requested"], "nothing left unconfirmed"
            for case in session.scalars(select(Case)):
                keys = [k for k, m in ours.items() if m.case_id == case.id]
                held = sum(getattr(ledger.get(k), "held_fen", 0) or 0 for k in keys)
                assert held <= cases.owed(case, today).remaining, case.case_number
        injected = sum((p.injected for p in plans), Counter())
        assert sum(injected.values()) > 0, "faults were injected"
        print(  # with -s: the figures for the README
            f"\nfaults at {rate:.0%}, {debtors} debtors: {seen['registry requests']} registry requests, "
            f"{sum(injected.values())} faults injected ({', '.join(f'{k} {v}' for k, v in sorted(injected.items()))}); "
            f"{len(ledger)} measures at the registries = {len(ledger)} of our {len(ours)} records; nothing lost"
        )
