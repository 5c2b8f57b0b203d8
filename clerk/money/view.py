"""What a case's money is, as a judge reads it: its sub-account, what arrived, from where, how it was
split, and what is held for whom (`clerk money show`, the case sheet)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, replace

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from clerk.casebook import cases
from clerk.money import journal, unidentified
from models import casesheet
from models.money import Account
from models.tables import AuditEvent, MoneyEntry, MoneyLeg, StatementLine, Subaccount
from models.values import format_yuan, mask_account


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


@dataclass(frozen=True)
class Standing:
    """What needs a person in the case money today (the daily report): unidentified money waiting, and the
    last reconciliation."""

    waiting: int
    waiting_fen: int
    aged: int  # waiting `alert_days` or more
    reconciled_at: dt.datetime | None
    agreed: bool | None
    differences: int

    def lines(self, alert_days: int) -> list[str]:
        waiting = (
            f"- unidentified money (不明款) waiting: {self.waiting} credit(s), "
            f"{format_yuan(self.waiting_fen)} yuan"
            + (f"; {self.aged} for {alert_days} days or more" if self.aged else "")
            + (" (`clerk money unidentified`)" if self.waiting else "")
        )
        head = "- reconciliation with the court's bank"
        if self.reconciled_at is None:
            return [waiting, f"{head}: not run yet"]
        at = f"{head} ({self.reconciled_at:%Y-%m-%d %H:%M} UTC)"
        if self.agreed:
            return [waiting, f"{at}: agreed to the fen"]
        return [
            waiting,
            f"{at}: **{self.differences} account(s) differ, or the statement was behind**: for a person",
        ]


def standing(session: Session, today: dt.date, alert_days: int) -> Standing:
    waiting = unidentified.waiting(session, today)
    last = session.execute(
        select(AuditEvent.occurred_at, AuditEvent.action, AuditEvent.payload)
        .where(AuditEvent.action.in_(("money.reconciled", "money.unreconciled")))
        .order_by(AuditEvent.seq.desc())
        .limit(1)
    ).first()
    return Standing(
        len(waiting),
        sum(w.amount_fen for w in waiting),
        sum(1 for w in waiting if w.days >= alert_days),
        None if last is None else last.occurred_at,
        None if last is None else last.action == "money.reconciled",
        0 if last is None else int(json.loads(last.payload).get("difference_count", 0)),
    )


def with_money(session: Session, sheet: casesheet.Sheet) -> casesheet.Sheet:
    """The case sheet (`clerk.control.case_sheet`) with the case's money: the control layer below reads no
    journal."""
    case = cases.get_case(session, sheet.case_number)
    number = session.scalar(select(Subaccount.number).where(Subaccount.case_id == case.id))
    held = journal.case_balances(session, case.id)
    parts = (Account.FEES, Account.APPLICANT, Account.REFUNDABLE)
    received = sum(fen for account, fen in held.items() if account != Account.BANK)
    money = casesheet.Money(
        None if number is None else mask_account(number), received, *(held.get(a, 0) for a in parts)
    )
    return replace(sheet, money=money)
