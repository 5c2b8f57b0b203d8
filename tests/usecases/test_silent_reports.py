"""A report silent on what the law protects keeps what the case book knows (issue 44): deposits that land on
protected accounts (a project's wage account, social-insurance funds, a union's funds) reach the clerk on
a bank's push feed, which says the balance only, and in balance answers that leave the purpose out. Neither
may make a protected account ordinary, nor freeze it. Over real HTTP to the simulators, on SQLite and
PostgreSQL, without Prefect; the banks' ledgers are the referee. An ordinary account's deposit in the same
runs is frozen, so the watch is seen at work."""

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
from connectors.loader import build
from connectors.simulator.faults import Hostile
from connectors.simulator.world import PROTECTED_PURPOSES
from models.exemptions import Exemptions
from models.supervision import bureau_today
from models.tables import Asset, AuditEvent, Case, CaseDebtor, Registry
from tests.fakes import context_for
from tests.world import World, served_world

NOW = dt.datetime.now(dt.UTC)
ACTOR = "flow-run:silent-reports"
ALLOWED = ["bank-json", "real-estate-xml", "vehicle-json"]
BANKS = ("bank-a", "bank-b")
POLICY = control.Policy(exempt=Exemptions(protected=frozenset(PROTECTED_PURPOSES)))
DEPOSIT = 27_009_38


def targets(sessions: sessionmaker[Session], today: dt.date) -> tuple[list[Asset], Asset]:
    """Protected accounts of cases still short of what they owe (a deposit there would be frozen if the
    account were ordinary), at most one a case, and one ordinary account of another short case."""
    protected: list[Asset] = []
    ordinary: Asset | None = None
    with sessions() as session:
        for case in session.scalars(select(Case).where(Case.status == "active").order_by(Case.id)):
            if cases.owed(case, today).remaining - control.claims(session, case.id) < 2 * DEPOSIT:
                continue
            debtors = select(CaseDebtor.debtor_id).where(CaseDebtor.case_id == case.id)
            deposits = list(
                session.scalars(
                    select(Asset)
                    .where(Asset.kind == "deposit", Asset.debtor_id.in_(debtors))
                    .order_by(Asset.id)
                )
            )
            mine = [a for a in deposits if a.purpose in PROTECTED_PURPOSES]
            if mine and len(protected) < 3:
                protected.append(mine[0])
            elif ordinary is None and not mine:
                ordinary = next((a for a in deposits if not a.other_measures), None)
    assert protected and ordinary is not None, "the seeded world has both"
    return protected, ordinary


def code_of(sessions: sessionmaker[Session], asset: Asset) -> str:
    with sessions() as session:
        return session.scalar(select(Registry.code).where(Registry.id == asset.registry_id)) or ""


async def deposit(world: World, code: str, account: str) -> None:
    url = next(c.base_url for c in world.configs if c.code == code)
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{url}/_sim/deposits", json={"account_no": account, "amount_fen": DEPOSIT}
        )
        response.raise_for_status()


def frozen_on(world: World, account: str) -> int:
    """What every measure of ours on the account holds at its bank."""
    return sum(
        getattr(m, "held_fen", 0) or 0
        for m in world.ledger_measures().values()
        if getattr(m, "identifier", None) == account and getattr(m, "status", "") in ("effective", "queued")
    )


@pytest.mark.parametrize("path", ["push feed", "balance answers without the purpose"])
def test_deposits_on_protected_accounts_are_never_frozen_and_never_make_them_ordinary(
    sessions: sessionmaker[Session], tmp_path: Path, path: str
) -> None:
    today = bureau_today()
    with served_world(tmp_path, debtors=120, seed=23, now=NOW, push_feed=True) as world:
        rows, _ = read_case_file(world.case_file, max_bytes=10**8, today=NOW.date())
        with sessions.begin() as session:
            import_cases(session, rows, actor=ACTOR)
            querying.ensure_registries(session, world.configs)
        if path != "push feed":
            for code in BANKS:
                world.simulators[code].hostile = Hostile(silent_balances=True)

        async def scenario() -> tuple[list[Asset], Asset, int]:
            connectors = build(world.configs, ALLOWED)
            try:
                ctx = context_for(sessions, connectors, world.configs, at=NOW, actor=ACTOR, policy=POLICY)
                await sweeping.sweep_due(ctx, querying.Schedule())
                protected, ordinary = targets(sessions, today)
                assert all(frozen_on(world, a.identifier) == 0 for a in protected), "left alone by the sweep"
                ordinary_before = frozen_on(world, ordinary.identifier)
                listening = []
                if path == "push feed":
                    listening = [asyncio.create_task(watch.listen(ctx, code, 4, 1)) for code in BANKS]
                    await asyncio.sleep(0.5)
                for asset in [*protected, ordinary]:
                    await deposit(world, code_of(sessions, asset), asset.identifier)
                if listening:
                    await asyncio.gather(*listening)
                else:
                    await watch.poll_once(ctx)
                return protected, ordinary, ordinary_before
            finally:
                await asyncio.gather(*(c.aclose() for c in connectors.values()))

        protected, ordinary, ordinary_before = asyncio.run(scenario())
        with sessions() as session:
            for before in protected:
                asset = session.get(Asset, before.id)
                assert asset is not None and asset.purpose == before.purpose, "the purpose stays"
                assert (asset.balance_fen or 0) >= DEPOSIT, "the deposit was seen"
                assert frozen_on(world, asset.identifier) == 0, f"{before.purpose}: never frozen"
            arrived = session.scalar(
                select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "deposit.arrived")
            )
            assert arrived and arrived >= len(protected) + 1
            for before in protected:
                debtor_cases = select(CaseDebtor.case_id).where(CaseDebtor.debtor_id == before.debtor_id)
                number = session.scalar(select(Case.case_number).where(Case.id.in_(debtor_cases)))
                assert number is not None
                sheet = control.case_sheet(session, number, today, POLICY)
                assert any(f.protected == before.purpose for f in sheet.found), "the sheet says protected"
        assert frozen_on(world, ordinary.identifier) > ordinary_before, (
            "an ordinary account's deposit is frozen"
        )
