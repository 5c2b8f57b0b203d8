"""Each case's sub-account at the court's bank (一案一账号): opened once per case, after its import, by a key
the bank answers with the same number however often it is asked (a lost reply is asked again)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from clerk.context import Context
from clerk.store import audit, db
from connectors.base import RegistryError
from connectors.court_bank import CourtBankPort
from models.status import KEPT
from models.tables import Case, Subaccount

AT_ONCE = 20  # requests in flight to the bank


@dataclass(frozen=True)
class Opened:
    opened: int
    failed: int  # the bank did not answer: asked again on the next run
    reasons: tuple[str, ...] = ()


def key_for(case_id: int, created_at_us: int) -> str:
    """One key per case row: a case book rebuilt from scratch (ids counted again) never gets another
    case's number back."""
    return f"sub-{case_id}-{created_at_us}"


def _missing(session: Session, limit: int) -> list[tuple[int, str, str]]:
    rows = session.execute(
        select(Case.id, Case.case_number, Case.created_at)
        .outerjoin(Subaccount, Subaccount.case_id == Case.id)
        .where(Subaccount.case_id.is_(None), Case.status.in_(KEPT))
        .order_by(Case.id)
        .limit(limit)
    )
    return [(i, n, key_for(i, int(at.timestamp() * 1_000_000))) for i, n, at in rows]


def _store(session: Session, opened: list[tuple[int, str, str]], actor: str) -> None:
    taken = set(
        session.scalars(select(Subaccount.case_id).where(Subaccount.case_id.in_([i for i, _, _ in opened])))
    )
    for case_id, case_number, number in opened:
        if case_id in taken:
            continue
        session.add(Subaccount(case_id=case_id, number=number))
        audit.append(session, "money.subaccount_opened", actor=actor, case_number=case_number, payload={})
    session.flush()


async def open_missing(ctx: Context, bank: CourtBankPort, limit: int = 10_000) -> Opened:
    """Open a sub-account for every case still running that has none (up to `limit` a run)."""
    missing = await db.read(ctx.sessions, _missing, limit)
    slots = asyncio.Semaphore(AT_ONCE)

    async def one(case_id: int, case_number: str, key: str) -> tuple[int, str, str] | RegistryError:
        async with slots:
            try:
                return case_id, case_number, await bank.open_subaccount(key, case_number)
            except RegistryError as exc:
                return exc

    answers = await asyncio.gather(*(one(*row) for row in missing))
    opened = [a for a in answers if isinstance(a, tuple)]
    failed = [a for a in answers if isinstance(a, RegistryError)]
    if opened:
        await db.write(ctx.sessions, _store, opened, ctx.actor)
    return Opened(len(opened), len(failed), tuple(sorted({f.reason for f in failed})))
