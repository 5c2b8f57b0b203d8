"""Use cases of the deposit watch: for cases not yet covered, watch the accounts already found, and freeze
new deposits up to what is still owed, within minutes (polling) or seconds (a bank's push feed).

A deposit is recorded as the account's new balance (audited per case as `deposit.arrived`); the cases
whose accounts rose are then planned and controlled by `control.control_cases`, under the same case lock
and cap as every other freeze. The feed's cursor is stored after the events are recorded: after a crash the
same events are read again, which records nothing twice (a balance is set, not added).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from clerk import control, querying
from clerk.casebook import cases
from clerk.context import Context
from clerk.store import audit, db
from connectors.base import (
    AssetReport,
    BalancePort,
    DepositFeed,
    FeedPort,
    RegistryError,
)
from models.rules import AssetKind
from models.status import CaseStatus
from models.tables import Asset, Case, CaseDebtor, FeedCursor, utcnow
from models.tallies import add_fields
from models.values import mask_account

#: Accounts per balance request (a bank answers up to 1,000; the simulated ones refuse more).
BALANCES_PER_REQUEST = 500


@dataclass
class WatchResult:
    polled_accounts: int = 0
    feed_events: int = 0
    deposits: int = 0  # balances that rose
    failed_calls: int = 0
    control: control.Counts = field(default_factory=control.Counts)

    def add(self, other: WatchResult) -> None:
        add_fields(self, other)


def uncovered_accounts(session: Session, today: dt.date) -> dict[int, list[str]]:
    """registry id -> account numbers of deposits held by debtors of active cases whose freezes do not yet
    cover what they owe."""
    live = control.claims_by_case(session)
    active = select(Case).where(Case.status == CaseStatus.ACTIVE).options(selectinload(Case.payments))
    short = [
        case.id
        for case in session.scalars(active)
        if live.get(case.id, 0) < cases.owed(case, today).remaining
    ]
    accounts: dict[int, list[str]] = {}
    for chunk in db.chunks(short):
        debtors = select(CaseDebtor.debtor_id).where(CaseDebtor.case_id.in_(chunk))
        for registry_id, identifier in session.execute(
            select(Asset.registry_id, Asset.identifier)
            .where(Asset.kind == "deposit", Asset.debtor_id.in_(debtors))
            .distinct()
        ):
            accounts.setdefault(registry_id, []).append(identifier)
    return accounts


def record_balances(
    session: Session, registry_id: int, registry_code: str, reports: Iterable[AssetReport], actor: str
) -> set[int]:
    """New balances of known accounts; returns the active cases whose debtors' balances rose or whose
    accounts another authority's measure no longer holds."""
    by_account = {r.identifier: r for r in reports}
    if not by_account:
        return set()
    now = utcnow()
    assets = session.scalars(
        select(Asset).where(Asset.registry_id == registry_id, Asset.identifier.in_(list(by_account)))
    ).all()
    risen: dict[int, list[tuple[Asset, int]]] = {}
    for asset in assets:
        before, others_before = asset.balance_fen or 0, asset.other_measures
        if querying.update_asset(asset, by_account[asset.identifier], now) and (
            (asset.balance_fen or 0) > before or asset.other_measures != others_before
        ):  # more money, or another authority's measure lifted
            risen.setdefault(asset.debtor_id, []).append((asset, before))
    if not risen:
        return set()
    touched: set[int] = set()
    entries = []
    for debtor_id, case_map in querying.cases_of(session, list(risen)).get("active", {}).items():
        for case_id, number in case_map.items():
            touched.add(case_id)
            for asset, before in risen[debtor_id]:
                entries.append(
                    audit.Entry(
                        "deposit.arrived",
                        actor,
                        number,
                        {
                            "registry": registry_code,
                            "asset": mask_account(asset.identifier),
                            "balance_before_fen": before,
                            "balance_fen": asset.balance_fen,
                        },
                    )
                )
    audit.append_many(session, entries)
    return touched


def feed_position(session: Session, registry_id: int) -> int:
    cursor = session.get(FeedCursor, registry_id)
    return cursor.position if cursor else 0


def record_feed(
    session: Session, registry_id: int, registry_code: str, feed: DepositFeed, actor: str
) -> set[int]:
    """Record a page of the deposit feed and move the cursor past it, in one transaction. The cursor row is
    locked first: two watch runs that overlap (one starting as the other ends) each record an event once,
    in order, and never write an older balance over a newer one."""
    cursor = _locked_cursor(session, registry_id)
    events = [e for e in feed.events if e.seq > cursor.position]
    latest: dict[str, AssetReport] = {}
    known = {
        a.identifier: a
        for a in session.scalars(
            select(Asset).where(
                Asset.registry_id == registry_id, Asset.identifier.in_([e.identifier for e in events])
            )
        )
    }
    for event in events:
        asset = known.get(event.identifier)
        if asset is None:
            continue  # not a debtor of ours
        # The balance only: a feed's event is silent on the account's purpose and on other authorities'
        # measures, and so keeps what the case book knows of them (querying.update_asset).
        latest[event.identifier] = AssetReport(
            asset_kind=AssetKind(asset.kind), identifier=event.identifier, balance_fen=event.balance_fen
        )
    touched = (
        record_balances(session, registry_id, registry_code, latest.values(), actor) if latest else set()
    )
    cursor.position = max(cursor.position, feed.last)
    return touched


def _locked_cursor(session: Session, registry_id: int) -> FeedCursor:
    db.insert_missing(
        session, FeedCursor, [{"registry_id": registry_id, "position": 0, "updated_at": utcnow()}]
    )
    cursor = session.get(FeedCursor, registry_id, with_for_update=True, populate_existing=True)
    assert cursor is not None
    return cursor


# --- the watch, with HTTP -----------------------------------------------------------------------------


async def poll_once(ctx: Context, skip: Iterable[str] = ()) -> WatchResult:
    """Ask every bank (but those in `skip`) for the balances of the uncovered cases' accounts, then freeze
    what rose. The banks are asked side by side, each within its own limit: a poll takes as long as the
    bank with the most accounts, not as long as all of them one after another."""
    sessions, connectors, actor = ctx.sessions, ctx.ports, ctx.actor
    accounts = await db.read(sessions, uncovered_accounts, ctx.today())
    codes = {r.id: code for code, r in ctx.registries.items()}

    async def poll_bank(
        registry_id: int, code: str, connector: BalancePort, identifiers: list[str]
    ) -> tuple[WatchResult, set[int]]:
        result, touched = WatchResult(), set[int]()
        for start in range(0, len(identifiers), BALANCES_PER_REQUEST):
            page = identifiers[start : start + BALANCES_PER_REQUEST]
            try:
                reports = await connector.balances(f"w-{uuid.uuid4().hex[:12]}", page)
            except RegistryError:
                result.failed_calls += 1
                continue
            result.polled_accounts += len(page)

            def record(reports: tuple[AssetReport, ...] = reports) -> set[int]:
                with sessions.begin() as session:
                    return record_balances(session, registry_id, code, reports, actor)

            touched |= await db.run(sessions, record)
        return result, touched

    polls: list[Coroutine[Any, Any, tuple[WatchResult, set[int]]]] = []
    for registry_id, identifiers in accounts.items():
        code = codes.get(registry_id)
        connector = connectors.get(code or "")
        if code is None or code in skip or not isinstance(connector, BalancePort):
            continue
        polls.append(poll_bank(registry_id, code, connector, identifiers))
    result, touched = WatchResult(), set[int]()
    for polled, cases_touched in await asyncio.gather(*polls):
        result.add(polled)
        touched |= cases_touched
    result.deposits = len(touched)
    if touched:
        result.control = await control.control_cases(ctx, sorted(touched))
    return result


async def listen(ctx: Context, code: str, seconds: float, wait_s: float) -> WatchResult:
    """Follow one bank's push feed for `seconds`, freezing each deposit as it lands."""
    sessions, actor = ctx.sessions, ctx.actor
    registry_id = ctx.registries[code].id
    result = WatchResult()
    connector = ctx.registries[code].port
    assert isinstance(connector, FeedPort)
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        position = await db.read(sessions, feed_position, registry_id)
        try:
            feed = await connector.deposits(position, min(wait_s, max(left, 0.0)))
        except RegistryError:
            result.failed_calls += 1
            await asyncio.sleep(min(1.0, max(left, 0.0)))
            continue
        if not feed.events and feed.last == position:
            continue

        def record(feed: DepositFeed = feed) -> set[int]:
            with sessions.begin() as session:
                return record_feed(session, registry_id, code, feed, actor)

        touched = await db.run(sessions, record)
        result.feed_events += len(feed.events)
        result.deposits += len(touched)
        if touched:
            result.control.add(await control.control_cases(ctx, sorted(touched)))
    return result
