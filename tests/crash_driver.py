"""A clerk process for crash tests: `python -m tests.crash_driver POINT N` runs one cycle of the clerk's work
(a sweep, then settling what is unconfirmed and collecting late answers) with the settings in the
environment, and kills itself with SIGKILL the N-th time it reaches POINT:

    mid-batch      before recording the N-th registry reply to a query batch (some batches recorded)
    before-send    after measures were written down and committed, before any is sent
    before-record  after a registry applied a freeze, before its reply is recorded
    none           never: the run that resumes

Case money only (the court's bank at CLERK_COURT_BANK_URL: sub-accounts opened, the statement read):

    money-opened   after the bank opened sub-accounts, before they are stored
    money-mid-page before the N-th page's journal is written (its lines, payments and cursor pending)
    money-pages    asking the N-th page of the statement (the pages before it recorded, or being recorded)
    money          never; then the bank and the journal are reconciled

No Prefect here: the flows call these same steps; what is tested is what a kill leaves in the database.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from clerk import control, querying, sweeping
from clerk.control import measures
from clerk.money import arriving, journal, reconcile, subaccounts
from clerk.querying import record
from clerk.settings import get_settings
from clerk.store import db
from connectors.court_bank import CourtBankConnector
from connectors.http import RegistryClient
from connectors.loader import build
from tests.fakes import context_for

ACTOR = "flow-run:crash-driver"


def die_on(n: int, func: Callable[..., Any]) -> Callable[..., Any]:
    calls = 0

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == n:
            os.kill(os.getpid(), signal.SIGKILL)
        return func(*args, **kwargs)

    return wrapped


async def money_cycle(reconciled: bool) -> None:
    settings = get_settings()
    sessions = db.session_factory(db.engine_for(settings.effective_database_url))
    ctx = context_for(sessions, {}, [], actor=ACTOR)
    assert settings.court_bank_url, "CLERK_COURT_BANK_URL"
    bank = CourtBankConnector(
        RegistryClient("court-bank", settings.court_bank_url, settings.court_bank_credential)
    )
    try:
        await subaccounts.open_missing(ctx, bank)
        await arriving.take_statement(ctx, bank, settings.court_account)
        if reconciled:
            await reconcile.reconcile(ctx, bank)
    finally:
        await bank.aclose()


async def cycle() -> None:
    settings = get_settings()
    sessions = db.session_factory(db.engine_for(settings.effective_database_url))
    connectors = build(settings.registries, settings.allowed_adapters)
    ctx = context_for(sessions, connectors, settings.registries, actor=ACTOR)
    try:
        await sweeping.sweep_due(ctx, querying.Schedule())
        await control.resolve_unconfirmed(ctx, dt.datetime.now(dt.UTC))
        await querying.collect_queries(ctx)
    finally:
        await asyncio.gather(*(c.aclose() for c in connectors.values()))


def main() -> None:
    point, n = sys.argv[1], int(sys.argv[2])
    if point == "mid-batch":
        # A page's replies are read one after another, then written together (`record.Recording`).
        record.Recording.add = die_on(n, record.Recording.add)  # type: ignore[method-assign]
    elif point == "before-send":
        # A plan's measures go to their send as the plan made them (`Plan.outgoing`), not read back.
        measures.send = die_on(n, measures.send)  # type: ignore[assignment]
    elif point == "before-record":
        measures.Measures.record = die_on(n, measures.Measures.record)  # type: ignore[assignment]
    elif point == "money-opened":
        subaccounts._store = die_on(n, subaccounts._store)
    elif point == "money-mid-page":
        journal.write = die_on(n, journal.write)
    elif point == "money-pages":
        CourtBankConnector.entries = die_on(n, CourtBankConnector.entries)  # type: ignore[method-assign]
    elif point not in ("none", "money"):
        raise SystemExit(f"unknown point {point}")
    asyncio.run(money_cycle(point == "money") if point.startswith("money") else cycle())


if __name__ == "__main__":
    main()
