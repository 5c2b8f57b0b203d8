"""Crashes: a clerk process killed with SIGKILL at the worst points (mid-batch, between writing a measure
down and sending it, between a registry applying a freeze and its reply being recorded), and PostgreSQL
stopped under a running clerk, then everything started again. The next runs resume: every hit is recorded
once, the ledgers and our records agree both ways, nothing stays unconfirmed, no case holds more than it
owes. Simulators over real HTTP; the clerk runs in a child process (tests/crash_driver.py)."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from clerk import control, querying
from clerk.casebook import cases
from clerk.casebook.casefile import read_case_file
from clerk.casebook.intake import import_cases
from connectors.config import registries_json
from models.supervision import bureau_today
from models.tables import (
    Asset,
    AuditEvent,
    Case,
    ControlMeasure,
    MoneyLeg,
    Payment,
    StatementLine,
    Subaccount,
)
from tests.fakes import context_for
from tests.world import World, served_world

NOW = dt.datetime.now(dt.UTC)
ROOT = Path(__file__).parents[2]


def clerk_process(world: World, database_url: str, point: str, n: int = 1) -> subprocess.Popen[str]:
    """The crash driver at `point`: a sweep's cycle against the registries, or (a `money` point) case
    money's against the court's bank alone."""
    money = point.startswith("money")
    env = os.environ | {
        "CLERK_DATABASE_URL": database_url,
        "CLERK_REGISTRIES": "[]" if money else registries_json(world.configs),
        "CLERK_NOTIFIER_URL": "",
        "CLERK_COURT_BANK_URL": world.court_bank_url if money else "",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "tests.crash_driver", point, str(n)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def run(world: World, database_url: str, point: str, n: int = 1) -> int:
    process = clerk_process(world, database_url, point, n)
    output, _ = process.communicate(timeout=300)
    if point in ("none", "money"):
        assert process.returncode == 0, output[-3000:]
    return process.returncode


def check(sessions: sessionmaker[Session], world: World) -> None:
    ledger = world.ledger_measures()
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Asset)) == world.holdings_of_debtors()
        ours = {m.idempotency_key: m for m in session.scalars(select(ControlMeasure))}
        assert set(ledger) <= set(ours), "every measure a registry holds is in our records"
        assert {k for k, m in ours.items() if m.status in ("effective", "queued")} <= set(ledger)
        assert not [m for m in ours.values() if m.status == "requested"], "nothing left unconfirmed"
        today = bureau_today()
        for case in session.scalars(select(Case)):
            keys = [k for k, m in ours.items() if m.case_id == case.id]
            held = sum(getattr(ledger.get(k), "held_fen", 0) or 0 for k in keys)
            assert held <= cases.owed(case, today).remaining, case.case_number


def import_world(sessions: sessionmaker[Session], world: World) -> None:
    rows, _ = read_case_file(world.case_file, max_bytes=10**8, today=NOW.date())
    with sessions.begin() as session:
        import_cases(session, rows, actor="test")


def test_killed_at_the_worst_points_then_resumed(
    sessions: sessionmaker[Session], database_url: str, tmp_path: Path
) -> None:
    with served_world(tmp_path, debtors=120, seed=37, now=NOW) as world:
        import_world(sessions, world)
        killed = [
            run(world, database_url, "mid-batch", 3),
            run(world, database_url, "before-send", 1),
            run(world, database_url, "before-record", 1),
        ]
        assert killed == [-signal.SIGKILL] * 3, killed
        with sessions() as session:  # the kills left work half done: measures written down, not confirmed
            unconfirmed = session.scalar(
                select(func.count()).select_from(ControlMeasure).where(ControlMeasure.status == "requested")
            )
        assert unconfirmed and unconfirmed > 0
        run(world, database_url, "none")
        run(world, database_url, "none")
        check(sessions, world)


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_postgresql_stopped_under_a_running_clerk_then_started(
    sessions: sessionmaker[Session], database_url: str, tmp_path: Path, pg_server: object
) -> None:
    with served_world(tmp_path, debtors=300, seed=41, now=NOW) as world:
        import_world(sessions, world)
        process = clerk_process(world, database_url, "none")
        time.sleep(1.5)  # mid-sweep
        pg_server.stop()  # type: ignore[attr-defined]
        try:
            output, _ = process.communicate(timeout=300)
        finally:
            pg_server.start()  # type: ignore[attr-defined]
        assert process.returncode != 0, "the clerk stops when its database goes away"
        assert "OperationalError" in output
        sessions.kw["bind"].dispose()  # connections from before the restart are gone
        run(world, database_url, "none")
        run(world, database_url, "none")
        check(sessions, world)


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_sweeps_the_watch_and_case_queries_at_once(
    sessions: sessionmaker[Session], database_url: str, tmp_path: Path
) -> None:
    """Everything at once on the same cases, on PostgreSQL: two clerk processes sweeping, the deposit watch
    and on-demand case queries in this one, deposits landing. The case row lock serialises planning: the cap
    holds, and every measure a registry holds is one of ours, each sent under its own key once."""
    import asyncio

    import httpx

    from clerk.control import watch
    from connectors.loader import build

    with served_world(tmp_path, debtors=150, seed=43, now=NOW, push_feed=True) as world:
        import_world(sessions, world)
        sweeps = [clerk_process(world, database_url, "none") for _ in range(2)]
        urls = {c.code: c.base_url for c in world.configs}

        async def here() -> None:
            connectors = build(world.configs, ["bank-json", "real-estate-xml", "vehicle-json"])
            judge = context_for(sessions, connectors, world.configs, actor="user:judge")
            with sessions.begin() as session:
                run_id = querying.start_run(session, "case-query")
            with sessions() as session:
                some = list(session.scalars(select(Case.id).order_by(Case.id).limit(12)))
                debtors = {c: querying.debtor_ids_of_case(session, c) for c in some}

            async def case_queries() -> None:
                for case_id in some:
                    for code in connectors:
                        await querying.query_batch(judge, code, run_id, debtors[case_id])
                    await control.control_cases(judge, [case_id])

            async def deposits() -> None:
                bank = world.simulators["bank-a"]
                async with httpx.AsyncClient() as client:
                    for account in list(bank.ledger.holdings)[:10]:
                        await client.post(
                            f"{urls['bank-a']}/_sim/deposits",
                            json={"account_no": account, "amount_fen": 5_000_00},
                        )
                        await asyncio.sleep(0.2)

            listeners = [
                watch.listen(judge.acting("flow-run:watch"), code, 5, 1) for code in ("bank-a", "bank-b")
            ]
            await asyncio.gather(case_queries(), deposits(), *listeners)
            await asyncio.gather(*(c.aclose() for c in connectors.values()))

        asyncio.run(here())
        for process in sweeps:
            output, _ = process.communicate(timeout=300)
            assert process.returncode == 0, output[-3000:]
        run(world, database_url, "none")  # settle anything a race left unconfirmed
        check(sessions, world)
        with sessions() as session:
            keys = session.scalars(select(ControlMeasure.idempotency_key)).all()
        assert len(keys) == len(set(keys)) and set(world.ledger_measures()) <= set(keys)


@pytest.mark.long
def test_killed_at_random_moments_again_and_again(
    sessions: sessionmaker[Session], database_url: str, tmp_path: Path
) -> None:
    """Ten clerk processes killed at random moments of their run (seeded), then one left to finish."""
    import random

    rng = random.Random(47)
    with served_world(tmp_path, debtors=400, seed=47, now=NOW) as world:
        import_world(sessions, world)
        killed = 0
        for _ in range(10):
            process = clerk_process(world, database_url, "none")
            time.sleep(rng.uniform(0.5, 4.0))
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                killed += 1
            process.communicate(timeout=300)
        assert killed >= 5
        run(world, database_url, "none")
        run(world, database_url, "none")
        check(sessions, world)


def test_a_lookup_sent_but_never_answered_makes_the_debtor_due_again(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    """What the random kill once showed in CI: registry A answered, the clerk died before registry B's answer
    was recorded. B's lookups were written down as `sent`, so the debtors stay due until B answers."""
    import asyncio

    from connectors.loader import build

    with served_world(tmp_path, debtors=20, seed=53, now=NOW) as world:
        import_world(sessions, world)
        with sessions.begin() as session:
            registry_ids = querying.ensure_registries(session, world.configs)
            run_id = querying.start_run(session, "sweep")
        with sessions() as session:
            (debtors,) = querying.due_debtor_ids(session, NOW, querying.Schedule())

        async def answer(code: str) -> None:
            connectors = build(world.configs, ["bank-json", "real-estate-xml", "vehicle-json"])
            try:
                ctx = context_for(sessions, connectors, world.configs, actor="test")
                await querying.query_batch(ctx, code, run_id, debtors)
            finally:
                await asyncio.gather(*(c.aclose() for c in connectors.values()))

        for code in ("bank-a", "realestate", "vehicles"):
            asyncio.run(answer(code))
        with sessions.begin() as session:  # bank-b: written down, then the clerk died
            querying.record_sent(
                session, run_id=run_id, registry_id=registry_ids["bank-b"], debtor_ids=debtors, ref="r"
            )
        later = dt.datetime.now(dt.UTC)
        with sessions() as session:
            assert [
                d for page in querying.due_debtor_ids(session, later, querying.Schedule()) for d in page
            ] == debtors
        asyncio.run(answer("bank-b"))
        with sessions() as session:
            assert list(querying.due_debtor_ids(session, later, querying.Schedule())) == []


def test_killed_between_the_court_banks_statement_and_the_journal_then_resumed(
    sessions: sessionmaker[Session], database_url: str, tmp_path: Path
) -> None:
    """SIGKILL after the bank opened sub-accounts and before they were stored, in the middle of a page of
    the statement (its lines and payments written, not committed) and between pages: the next run opens
    the same sub-accounts (one per case), records every line once, counts every transfer once, and the
    bank and the journal agree to the fen."""
    with served_world(tmp_path, debtors=60, seed=43, now=NOW) as world:
        import_world(sessions, world)
        assert run(world, database_url, "money-opened") == -signal.SIGKILL
        assert world.court_bank.books.by_key, "the bank opened sub-accounts nobody stored"
        run(world, database_url, "money")
        with sessions() as session:
            subs = dict(session.execute(select(Subaccount.case_id, Subaccount.number)).tuples().all())
            owed = {c.id: cases.owed(c, bureau_today()).remaining for c in session.scalars(select(Case))}
        assert len(set(subs.values())) == len(subs) == len(world.court_bank.books.cases), "one per case"
        paying = [case_id for case_id in sorted(subs) if owed[case_id] > 2_00][:40]
        for i in range(2_500):  # more than a page (2,000 lines): kills land between pages too
            case_id = paying[i % len(paying)]
            world.court_bank.credit(1 if i % 2 else 2, subs[case_id], payer_name="债务人")
        killed = [
            run(world, database_url, "money-mid-page", 1),
            # the next page is asked while one is recorded: the 3rd ask, while the 2nd page is recorded
            run(world, database_url, "money-pages", 3),
        ]
        assert killed == [-signal.SIGKILL] * 2, killed
        with sessions() as session:
            recorded = session.scalar(select(func.count()).select_from(StatementLine))
        assert recorded == 2_000, "the page recorded before the kill stayed, the one it interrupted did not"
        run(world, database_url, "money")
        with sessions() as session:
            assert session.scalar(select(func.count()).select_from(StatementLine)) == 2_500
            assert (
                session.scalar(select(func.count()).select_from(Payment).where(Payment.source == "transfer"))
                == 2_500
            ), "every transfer counted once"
            assert session.scalar(select(func.coalesce(func.sum(MoneyLeg.fen), 0))) == 0, (
                "the journal balances"
            )
            last = session.scalar(
                select(AuditEvent.action)
                .where(AuditEvent.action.in_(("money.reconciled", "money.unreconciled")))
                .order_by(AuditEvent.seq.desc())
                .limit(1)
            )
        assert last == "money.reconciled", "the bank and the journal agree to the fen"
