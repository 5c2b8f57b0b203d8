"""Unidentified money (不明款): credits the clerk could not place with a case wait for a person, who assigns
each to its case or decides to send it back, with a reason; both are journal entries, audited. Local
practice: claimed within 3 days (`Settings.unidentified_alert_days`), cleared to zero monthly."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from clerk.casebook import cases
from clerk.money import journal
from clerk.money.arriving import Placer, cannot_take, held_cases
from models import money
from models.status import KEPT
from models.tables import MoneyEntry, StatementLine
from models.values import InvalidValue

SETTLED = ("assigned", "to_return", "reversed")


@dataclass(frozen=True)
class Waiting:
    """A credit waiting for a person: by the bank's reference; who paid is personal data (masked where
    shown)."""

    reference: str
    amount_fen: int
    value_date: dt.date
    subaccount: str | None
    counterparty_account: str | None
    counterparty_name: str | None
    remittance: str
    days: int


def waiting(session: Session, today: dt.date) -> list[Waiting]:
    """Every unidentified credit not yet assigned, returned or reversed, oldest first."""
    settled = select(MoneyEntry.line_id).where(MoneyEntry.kind.in_(SETTLED), MoneyEntry.line_id.is_not(None))
    rows = session.scalars(
        select(StatementLine)
        .join(MoneyEntry, MoneyEntry.line_id == StatementLine.id)
        .where(MoneyEntry.kind == "unidentified", StatementLine.id.not_in(settled))
        .order_by(StatementLine.value_date, StatementLine.seq)
    )
    return [
        Waiting(
            r.reference,
            r.amount_fen,
            r.value_date,
            r.subaccount,
            r.counterparty_account,
            r.counterparty_name,
            r.remittance,
            (today - r.value_date).days,
        )
        for r in rows
    ]


def _line(session: Session, reference: str) -> StatementLine:
    line = session.scalar(select(StatementLine).where(StatementLine.reference == reference))
    if line is None:
        raise InvalidValue("reference", f"no statement line {reference!r}")
    kinds = set(session.scalars(select(MoneyEntry.kind).where(MoneyEntry.line_id == line.id)))
    if "unidentified" not in kinds:
        raise InvalidValue("reference", f"{reference} was placed with a case, not unidentified")
    if kinds & set(SETTLED):
        raise InvalidValue(
            "reference", f"{reference} is no longer waiting ({', '.join(sorted(kinds & set(SETTLED)))})"
        )
    return line


def _reason(reason: str) -> str:
    reason = reason.strip()
    if len(reason) < 4:
        raise InvalidValue("reason", "say why, in at least 4 characters")
    return reason


def assign(
    session: Session, reference: str, case_number: str, *, actor: str, reason: str, today: dt.date
) -> money.Split:
    """Place an unidentified credit with its case: recorded as the case's payment on the day the money
    arrived, then split as any money the case receives."""
    why = _reason(reason)
    line = _line(session, reference)
    case_id = cases.get_case(session, case_number).id
    case = held_cases(session, [case_id])[case_id]
    owed = case.owed(line.value_date)
    refused = cannot_take(case, line.amount_fen, owed)
    if refused is not None:
        raise InvalidValue("case_number" if case.status not in KEPT else "reference", refused)
    placer = Placer(session, actor, today)
    legs = money.assigned(line.amount_fen, case.id)
    parts = placer.place(case, line, "assigned", legs, owed, reason=why, payment="assigned")
    placer.flush()
    return parts


def send_back(session: Session, reference: str, *, actor: str, reason: str) -> int:
    """Decide to return an unidentified credit to whoever paid it (the payment order itself goes with the
    payouts); returns the amount."""
    why = _reason(reason)
    line = _line(session, reference)
    journal.post(session, "to_return", money.to_return(line.amount_fen), actor=actor, line=line, reason=why)
    return line.amount_fen
