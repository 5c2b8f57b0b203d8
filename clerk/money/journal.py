"""The case-money journal in the case book: entries posted in the caller's transaction, each audited, and
balances derived from the legs (never stored)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from clerk.store import audit, bulk, db
from models.money import Account, Leg, entry
from models.tables import MoneyEntry, MoneyLeg, StatementLine, Subaccount


class Line(Protocol):
    """What an entry needs of the statement line that caused it (a row, or a page's line just written)."""

    @property
    def id(self) -> int: ...


@dataclass(frozen=True)
class Posting:
    """One entry to write: its kind, its legs (`models.money.entry` checks them) and its cause."""

    kind: str
    legs: tuple[Leg, ...]
    case_number: str | None = None
    line: Line | None = None
    action_id: int | None = None
    reason: str | None = None


def write(session: Session, postings: Sequence[Posting], *, actor: str) -> list[audit.Entry]:
    """Write the entries and their legs (two bulk inserts, whatever their number) and return the audit
    event of each, holding its legs, for the caller to append in the order it wants (`post_many`)."""
    checked = [entry(*p.legs) for p in postings]
    case_ids = []
    for legs in checked:
        cases = {leg.case_id for leg in legs if leg.case_id is not None}
        if len(cases) > 1:
            raise ValueError("one entry moves one case's money")
        case_ids.append(next(iter(cases), None))
    ids = bulk.insert_rows(
        session,
        db.table(MoneyEntry),
        [
            {
                "kind": p.kind,
                "case_id": case_id,
                "line_id": None if p.line is None else p.line.id,
                "action_id": p.action_id,
                "actor": actor,
                "reason": p.reason,
            }
            for p, case_id in zip(postings, case_ids, strict=True)
        ],
    )
    bulk.insert_rows(
        session,
        db.table(MoneyLeg),
        [
            {"entry_id": entry_id, "account": leg.account.value, "case_id": leg.case_id, "fen": leg.fen}
            for entry_id, legs in zip(ids, checked, strict=True)
            for leg in legs
        ],
    )
    return [
        audit.Entry(
            f"money.{p.kind}",
            actor,
            p.case_number,
            {
                "entry": entry_id,
                "legs": {leg.account.value: leg.fen for leg in legs},  # one leg per account
                "line": None if p.line is None else p.line.id,  # its bank reference is the line's
                "reason": p.reason,
            },
        )
        for p, entry_id, legs in zip(postings, ids, checked, strict=True)
    ]


def post_many(session: Session, postings: Sequence[Posting], *, actor: str) -> None:
    """Write the entries and their audit events: the audit log's tree protects the journal as it protects
    every event."""
    audit.append_many(session, write(session, postings, actor=actor))


def post(
    session: Session,
    kind: str,
    legs: Iterable[Leg],
    *,
    actor: str,
    case_number: str | None = None,
    line: Line | None = None,
    action_id: int | None = None,
    reason: str | None = None,
) -> None:
    """`post_many` of one entry."""
    post_many(session, [Posting(kind, tuple(legs), case_number, line, action_id, reason)], actor=actor)


def legs_of(session: Session, entry_ids: Iterable[int]) -> dict[int, list[Leg]]:
    """The legs of these entries, by entry, in the order they were written."""
    legs: dict[int, list[Leg]] = {}
    for entry_id, account, case_id, fen in session.execute(
        select(MoneyLeg.entry_id, MoneyLeg.account, MoneyLeg.case_id, MoneyLeg.fen)
        .where(MoneyLeg.entry_id.in_(list(entry_ids)))
        .order_by(MoneyLeg.id)
    ):
        legs.setdefault(entry_id, []).append(Leg(Account(account), case_id, fen))
    return legs


def case_balances(session: Session, case_id: int) -> dict[Account, int]:
    """A case's money by account, as credits (what the money is for) are positive: received, fees,
    applicant, refundable, … (the bank's side of it is `bank`, a debit, shown as it is)."""
    rows = session.execute(
        select(MoneyLeg.account, func.sum(MoneyLeg.fen))
        .where(MoneyLeg.case_id == case_id)
        .group_by(MoneyLeg.account)
    )
    return {Account(account): int(fen if account == Account.BANK else -fen) for account, fen in rows if fen}


def bureau_balances(session: Session) -> dict[Account, int]:
    """The bureau's own accounts (unidentified money, money to return), as credits."""
    rows = session.execute(
        select(MoneyLeg.account, func.sum(MoneyLeg.fen))
        .where(MoneyLeg.account.in_([Account.UNIDENTIFIED, Account.TO_RETURN]))
        .group_by(MoneyLeg.account)
    )
    return {Account(account): -int(fen) for account, fen in rows if fen}


def fees_taken(session: Session, case_ids: Iterable[int]) -> dict[int, int]:
    """The fee and costs already taken from each case's money (0 where none was)."""
    ids = sorted(set(case_ids))
    taken = dict.fromkeys(ids, 0)
    for chunk in db.chunks(ids):
        rows = session.execute(
            select(MoneyLeg.case_id, func.sum(MoneyLeg.fen))
            .where(db.among(session, MoneyLeg.case_id, chunk), MoneyLeg.account == Account.FEES)
            .group_by(MoneyLeg.case_id)
        )
        taken.update((case_id, -int(fen)) for case_id, fen in rows)
    return taken


def bank_balances(session: Session, master: str, through: int) -> dict[str, int]:
    """What the journal says each account at the bank holds, counting the statement up to entry `through`:
    the master account (all of it) and each sub-account with money, by number."""
    rows = session.execute(
        select(Subaccount.number, func.sum(MoneyLeg.fen))
        .join(MoneyEntry, MoneyEntry.id == MoneyLeg.entry_id)
        .join(StatementLine, StatementLine.id == MoneyEntry.line_id)
        .outerjoin(Subaccount, Subaccount.case_id == MoneyLeg.case_id)
        .where(MoneyLeg.account == Account.BANK, StatementLine.seq <= through)
        .group_by(Subaccount.number)
    )
    found = {master: 0}
    for number, fen in rows:
        found[master] += int(fen)
        if number is not None:
            found[number] = int(fen)
    return found
