"""The deposit watch's use cases against the simulators over real HTTP, on SQLite and PostgreSQL: two
watch runs that overlap (as scheduled runs do) follow the same push feed; each deposit is recorded once and
frozen once, and the cap holds."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from clerk import control, querying, sweeping
from clerk.casebook import cases
from clerk.casebook.casefile import read_case_file
from clerk.casebook.intake import import_cases
from clerk.control import watch
from connectors.base import AssetReport, RegistryUnavailable
from connectors.config import placeholder_configs
from connectors.loader import build
from models.supervision import bureau_today
from models.tables import Asset, AuditEvent, Case, ControlMeasure, FeedCursor, Registry
from tests.fakes import context_for
from tests.world import served_world

NOW = dt.datetime.now(dt.UTC)
ACTOR = "flow-run:watch-test"
ALLOWED = ["bank-json", "real-estate-xml", "vehicle-json"]


def test_overlapping_watch_runs_record_and_freeze_each_deposit_once(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    with served_world(tmp_path, debtors=60, seed=23, now=NOW, push_feed=True) as world:
        rows, _ = read_case_file(world.case_file, max_bytes=10**8, today=NOW.date())
        with sessions.begin() as session:
            import_cases(session, rows, actor=ACTOR)
            querying.ensure_registries(session, world.configs)
        today = bureau_today()
        urls = {c.code: c.base_url for c in world.configs}

        async def scenario() -> list[tuple[str, str, int]]:
            connectors = build(world.configs, ALLOWED)
            ctx = context_for(sessions, connectors, world.configs, at=NOW, actor=ACTOR)
            await sweeping.sweep_due(ctx, querying.Schedule())
            targets = short_accounts(sessions, today)[:4]
            assert len(targets) == 4
            runs = [
                asyncio.create_task(watch.listen(ctx, code, 6, 2))
                for code in ("bank-a", "bank-b")
                for _ in range(2)  # two overlapping runs per bank
            ]
            await asyncio.sleep(1)
            async with httpx.AsyncClient() as client:
                for code, account, amount in targets:
                    response = await client.post(
                        f"{urls[code]}/_sim/deposits", json={"account_no": account, "amount_fen": amount}
                    )
                    response.raise_for_status()
                    await asyncio.sleep(0.3)
            await asyncio.gather(*runs)
            await asyncio.gather(*(c.aclose() for c in connectors.values()))
            return targets

        targets = asyncio.run(scenario())
        ledger_measures = world.ledger_measures()
        with sessions() as session:
            for code, account, amount in targets:
                on_account = [
                    m
                    for m in ledger_measures.values()
                    if getattr(m, "identifier", None) == account and getattr(m, "requested_fen", 0) == amount
                ]
                assert len(on_account) == 1, f"one freeze of the deposit on {code}"
            arrived = session.scalar(
                select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "deposit.arrived")
            )
            assert arrived == len(targets)
            for cursor in session.scalars(select(FeedCursor)):
                bank = world.simulators[session.get(Registry, cursor.registry_id).code]  # type: ignore[union-attr]
                assert cursor.position == len(bank.ledger.deposit_events)
            for case in session.scalars(select(Case)):
                keys = session.scalars(
                    select(ControlMeasure.idempotency_key).where(ControlMeasure.case_id == case.id)
                )
                held = sum(getattr(ledger_measures.get(k), "held_fen", 0) or 0 for k in keys)
                assert held <= cases.owed(case, today).remaining


def short_accounts(sessions: sessionmaker[Session], today: dt.date) -> list[tuple[str, str, int]]:
    """(bank, account, amount) on plain accounts of different cases short of what they owe by more than
    `amount`, at different debtors."""
    found: list[tuple[str, str, int]] = []
    seen_debtors: set[int] = set()
    with sessions() as session:
        codes = {rid: code for rid, code in session.execute(select(Registry.id, Registry.code))}
        for case in session.scalars(select(Case).where(Case.status == "active").order_by(Case.id)):
            short = cases.owed(case, today).remaining - control.claims(session, case.id)
            debtors = querying.debtor_ids_of_case(session, case.id)
            if short < 1_000_00 or seen_debtors & set(debtors):
                continue
            for asset in session.scalars(
                select(Asset).where(Asset.kind == "deposit", Asset.debtor_id.in_(debtors))
            ):
                if not asset.other_measures:
                    found.append((codes[asset.registry_id], asset.identifier, short // 2))
                    seen_debtors |= set(debtors)
                    break
    return found


class _Bank:
    """A bank that answers balances (nothing rose), bank-a only once bank-b has been asked too: asked one
    after the other, bank-a would wait for bank-b for ever (here: until its 10 s run out, then fail)."""

    def __init__(self, code: str, asked: dict[str, asyncio.Event]) -> None:
        self.code, self.asked = code, asked

    async def balances(self, request_ref: str, identifiers: list[str]) -> tuple[AssetReport, ...]:
        self.asked[self.code].set()
        if self.code == "bank-a":
            try:
                await asyncio.wait_for(self.asked["bank-b"].wait(), 10)
            except TimeoutError:
                raise RegistryUnavailable(self.code, "bank-b was not asked meanwhile") from None
        return ()


def test_a_poll_asks_the_banks_side_by_side(
    sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    configs = [c for c in placeholder_configs() if c.code in ("bank-a", "bank-b")]

    async def scenario() -> watch.WatchResult:
        asked = {"bank-a": asyncio.Event(), "bank-b": asyncio.Event()}
        ports = {c.code: _Bank(c.code, asked) for c in configs}
        ctx = context_for(sessions, ports, configs, at=NOW)  # type: ignore[arg-type]
        ids = ctx.registry_ids
        monkeypatch.setattr(
            watch, "uncovered_accounts", lambda session, today: {ids["bank-a"]: ["1"], ids["bank-b"]: ["2"]}
        )
        return await watch.poll_once(ctx)

    result = asyncio.run(scenario())
    assert (result.failed_calls, result.polled_accounts) == (0, 2)
