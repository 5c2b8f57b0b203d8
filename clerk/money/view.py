"""What a case's money is, as a judge reads it: its sub-account, what arrived, from where, how it was
split, and what is held for whom (`clerk money show`, the case sheet)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from clerk.casebook import cases
from clerk.money import journal
from models.money import Account
from models.tables import MoneyEntry, MoneyLeg, StatementLine, Subaccount


@dataclass(frozen=True)
class Arrival:
    reference: str
    value_date: dt.date
    amount_fen: int
    how: str  # "deduction", "transfer" or "assigned" (unidentified money a person placed), "reversed"
    counterparty_name: str | None
    counterparty_account: str | None


@dataclass(frozen=True)
class CaseMoney:
    case_number: str
    subaccount: str | None
    arrivals: tuple[Arrival, ...]
    balances: dict[Account, int]


def case_money(session: Session, case_number: str) -> CaseMoney:
    case = cases.get_case(session, case_number)
    number = session.scalar(select(Subaccount.number).where(Subaccount.case_id == case.id))
    rows = session.execute(
        select(StatementLine, MoneyEntry.kind, MoneyEntry.action_id)
        .join(MoneyEntry, MoneyEntry.line_id == StatementLine.id)
        .where(MoneyEntry.case_id == case.id, MoneyEntry.kind.in_(("arrived", "assigned", "reversed")))
        .order_by(StatementLine.seq, MoneyEntry.id)
    )
    arrivals: list[Arrival] = []
    for line, kind, action_id in rows:
        how = {"arrived": "deduction" if action_id else "transfer"}.get(kind, kind)
        if kind == "reversed" and any(a.reference == line.reference for a in arrivals):
            continue  # a reversal posts one entry per entry it undoes: one row
        arrivals.append(
            Arrival(
                line.reference,
                line.value_date,
                line.amount_fen,
                how,
                line.counterparty_name,
                line.counterparty_account,
            )
        )
    return CaseMoney(case.case_number, number, tuple(arrivals), journal.case_balances(session, case.id))


@dataclass(frozen=True)
class BureauMoney:
    """All the case money, as the case-money team reads it (the demo, the daily report): what arrived and
    how it was placed, and what the journal holds for whom."""

    from_deductions: tuple[int, int]  # lines, fen
    transfers: tuple[int, int]
    assigned: tuple[int, int]
    unidentified: tuple[int, int]  # placed there when they arrived (some since assigned or returned)
    held: dict[Account, int]  # by account, over every case and the bureau's own, as credits

    @property
    def waiting_fen(self) -> int:
        return self.held.get(Account.UNIDENTIFIED, 0)


def bureau_money(session: Session) -> BureauMoney:
    rows = session.execute(
        select(
            MoneyEntry.kind,
            MoneyEntry.action_id.is_not(None),
            func.count(),
            func.sum(StatementLine.amount_fen),
        )
        .join(StatementLine, StatementLine.id == MoneyEntry.line_id)
        .where(MoneyEntry.kind.in_(("arrived", "assigned", "unidentified")))
        .group_by(MoneyEntry.kind, MoneyEntry.action_id.is_not(None))
    )
    found: dict[str, tuple[int, int]] = {}
    for kind, deducted, count, fen in rows:
        name = "deduction" if kind == "arrived" and deducted else "transfer" if kind == "arrived" else kind
        found[name] = (int(count), int(fen or 0))
    held = session.execute(select(MoneyLeg.account, func.sum(MoneyLeg.fen)).group_by(MoneyLeg.account))
    none = (0, 0)
    return BureauMoney(
        found.get("deduction", none),
        found.get("transfer", none),
        found.get("assigned", none),
        found.get("unidentified", none),
        {Account(a): int(fen if a == Account.BANK else -fen) for a, fen in held if fen},
    )
