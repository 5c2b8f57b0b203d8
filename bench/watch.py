"""Deposit to freeze: from a deposit landing at a simulated bank to our freeze being effective there, p50
and p95, with the bank's push feed and with balance polling (the watch flow's two ways), side by side.

Set-up: a seeded world served on loopback (two banks with a push feed, a real-estate and a vehicle
registry), its cases imported into a fresh SQLite case book and swept once. Then, for each mode, deposits
land one after another on accounts of cases still short of what they owe (each on a different case, each
less than its shortfall), while the watch's use cases run as the flow runs them; the latency of each is
taken from the deposit's POST to the moment the bank's ledger shows our freeze holding it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, cast

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bench.common import record, table
from clerk import context, control, querying, sweeping
from clerk.casebook import cases
from clerk.casebook.casefile import read_case_file, write_case_file
from clerk.casebook.intake import import_cases
from clerk.context import Context
from clerk.control import watch
from clerk.store import db
from connectors.adapter import HttpConnector
from connectors.config import RegistryConfig, placeholder_configs
from connectors.loader import build
from connectors.simulator.bank import BankSimulator
from connectors.simulator.serve import build_world, world_in_background
from connectors.simulator.world import case_rows
from models.policy import Policy
from models.supervision import bureau_today
from models.tables import Asset, Case, Registry

ACTOR = "bench:watch"
ALLOWED = ["bank-json", "real-estate-xml", "vehicle-json"]
POLL_S = 20.0  # the setting watch_poll_s


def _targets(
    sessions: sessionmaker[Session], banks: dict[str, BankSimulator], count: int, used: set[int]
) -> list[tuple[str, str, int]]:
    """(bank, account, amount) on accounts of short cases that nobody else holds, one per case."""
    today = bureau_today()
    found: list[tuple[str, str, int]] = []
    with sessions() as session:
        codes = {rid: code for rid, code in session.execute(select(Registry.id, Registry.code))}
        for case in session.scalars(select(Case).where(Case.status == "active").order_by(Case.id)):
            if case.id in used:
                continue
            claims = control.claims(session, case.id)
            short = cases.owed(case, today).remaining - claims
            if short < 2_000_00:
                continue
            debtors = querying.debtor_ids_of_case(session, case.id)
            for asset in session.scalars(
                select(Asset).where(Asset.kind == "deposit", Asset.debtor_id.in_(debtors))
            ):
                bank = banks.get(codes[asset.registry_id])
                holding = bank.ledger.holdings.get(asset.identifier) if bank else None
                if bank is None or holding is None or holding.restrictions or asset.other_measures:
                    continue
                used.add(case.id)
                found.append((bank.code, asset.identifier, short // 2))
                break
            if len(found) == count:
                break
    return found


def _held(bank: BankSimulator, account: str) -> int:
    return sum(
        m.held_fen or 0
        for m in bank.ledger.measures.values()
        if m.identifier == account and m.status == "effective"
    )


async def _measure(
    mode: str,
    sessions: sessionmaker[Session],
    configs: list[RegistryConfig],
    banks: dict[str, BankSimulator],
    targets: list[tuple[str, str, int]],
    gap_s: float,
    poll_s: float,
) -> list[float]:
    ctx = watch_context(sessions, configs)
    urls = {c.code: c.base_url for c in configs}
    seconds = len(targets) * gap_s + poll_s + 10
    stop = asyncio.Event()

    async def poller() -> None:
        while not stop.is_set():
            await watch.poll_once(ctx)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), poll_s)

    async def listener(code: str) -> None:
        await watch.listen(ctx, code, seconds, 5.0)

    watchers = (
        [asyncio.create_task(listener(code)) for code in banks]
        if mode == "push"
        else [asyncio.create_task(poller())]
    )
    latencies: list[float] = []
    rng = random.Random(5)
    try:
        await asyncio.sleep(1.0)  # the watch is running
        async with httpx.AsyncClient() as client:
            for code, account, amount in targets:
                before = _held(banks[code], account)
                started = time.perf_counter()
                response = await client.post(
                    f"{urls[code]}/_sim/deposits", json={"account_no": account, "amount_fen": amount}
                )
                response.raise_for_status()
                while _held(banks[code], account) <= before:
                    if time.perf_counter() - started > poll_s + 30:
                        raise RuntimeError(f"{mode}: a deposit was not frozen within {poll_s + 30:.0f} s")
                    await asyncio.sleep(0.01)
                latencies.append(time.perf_counter() - started)
                # land the next one at a random moment of the poll cycle, not right after a poll
                await asyncio.sleep(gap_s + rng.uniform(0, poll_s if mode == "poll" else gap_s))
    finally:
        stop.set()
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        await close(ctx)
    return latencies


def watch_context(
    sessions: sessionmaker[Session],
    configs: list[RegistryConfig],
    policy: Policy | None = None,
    actor: str = ACTOR,
) -> Context:
    """The use cases' context over HTTP to these registries, their rows made sure of; `close` it."""
    connectors = build(configs, ALLOWED)
    with sessions.begin() as session:
        ids = querying.ensure_registries(session, configs)
    sizes = {c.code: c.batch_size for c in configs}
    return Context(sessions, context.registries(connectors, ids, sizes), policy or Policy(), actor=actor)


async def close(ctx: Context) -> None:
    """Close a `watch_context`'s clients."""
    await asyncio.gather(*(cast(HttpConnector, port).aclose() for port in ctx.ports.values()))


async def sweep_once(
    sessions: sessionmaker[Session],
    configs: list[RegistryConfig],
    now: dt.datetime,
    policy: Policy | None = None,
) -> None:
    """The first sweep of a freshly imported case book, as the sweep flow makes it."""
    ctx = watch_context(sessions, configs, policy)
    try:
        await sweeping.sweep_due(ctx.at(now), querying.Schedule())
    finally:
        await close(ctx)


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def run(quick: bool = False) -> list[dict[str, Any]]:
    debtors, deposits = (400, 6) if quick else (3000, 20)
    poll_s = 2.0 if quick else POLL_S
    gap_s = 0.5 if quick else 2.0
    now = dt.datetime.now(dt.UTC)
    world = build_world(placeholder_configs(push_feed=True), debtors, seed=17, now=now)
    banks = {s.code: s for s, _, _ in world.simulators if isinstance(s, BankSimulator)}
    with tempfile.TemporaryDirectory() as tmp, world_in_background(world) as configs:
        engine = db.make_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
        db.upgrade(engine)
        sessions = db.session_factory(engine)
        case_file = Path(tmp) / "cases.csv"
        write_case_file(case_file, case_rows(world.debtors, 17, now.date()))
        rows, _ = read_case_file(case_file, max_bytes=10**9, today=now.date())
        with sessions.begin() as session:
            import_cases(session, rows, actor=ACTOR)

        asyncio.run(sweep_once(sessions, configs, now))
        used: set[int] = set()
        results = []
        for mode in ("push", "poll"):
            targets = _targets(sessions, banks, deposits, used)
            if len(targets) < deposits:
                raise RuntimeError(f"only {len(targets)} accounts of short cases to deposit on")
            latencies = asyncio.run(_measure(mode, sessions, configs, banks, targets, gap_s, poll_s))
            p95 = round(_percentile(latencies, 95), 3)
            goal = 5.0 if mode == "push" else 60.0
            results.append(
                {
                    "mode": mode,
                    "poll every s": f"{poll_s:g}" if mode == "poll" else "-",
                    "deposits": len(latencies),
                    "p50 s": round(statistics.median(latencies), 3),
                    "p95 s": p95,
                    "max s": round(max(latencies), 3),
                    "goal p95 s": goal,
                    "met": "yes" if p95 < goal else "NO",
                }
            )
        engine.dispose()
    table(f"Deposit to freeze ({debtors:,} debtors; {'quick' if quick else 'full'})", results)
    record("watch", [r | {"debtors": debtors} for r in results], quick=quick)
    return results
