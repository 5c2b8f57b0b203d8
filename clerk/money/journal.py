"""The case-money journal in the case book: entries posted in the caller's transaction, each audited, and
balances derived from the legs (never stored)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from clerk.store import audit
from models.money import Account, Leg, entry
from models.tables import MoneyEntry, MoneyLeg, StatementLine, Subaccount


def post(
    session: Session,
    kind: str,
    legs: Iterable[Leg],
    *,
    actor: str,
    case_number: str | None = None,
    line: StatementLine | None = None,
    action_id: int | None = None,
    reason: str | None = None,
) -> MoneyEntry:
    """Write one entry (its legs must balance: `models.money.entry`) and its audit event, which holds the
    legs: the audit log's tree protects the journal as it protects every event."""
    checked = entry(*legs)
    cases = {leg.case_id for leg in checked if leg.case_id is not None}
    if len(cases) > 1:
        raise ValueError("one entry moves one case's money")
    case_id = next(iter(cases), None)
    row = MoneyEntry(
        kind=kind,
        case_id=case_id,
        line_id=None if line is None else line.id,
        action_id=action_id,
        actor=actor,
        reason=reason,
    )
    session.add(row)
    session.flush()
    session.add_all(
        MoneyLeg(entry_id=row.id, account=leg.account, case_id=leg.case_id, fen=leg.fen) for leg in checked
    )
    audit.append(
        session,
        f"money.{kind}",
        actor=actor,
        case_number=case_number,
        payload={
            "entry": row.id,
            "legs": [[leg.account.value, leg.fen] for leg in checked],
            "bank_reference": None if line is None else line.reference,
            "reason": reason,
        },
    )
    return row


def legs_of(session: Session, entry_ids: Iterable[int]) -> list[Leg]:
    rows = session.execute(
        select(MoneyLeg.account, MoneyLeg.case_id, MoneyLeg.fen)
        .where(MoneyLeg.entry_id.in_(list(entry_ids)))
        .order_by(MoneyLeg.id)
    )
    return [Leg(Account(account), case_id, fen) for account, case_id, fen in rows]


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


def fees_taken(session: Session, case_id: int) -> int:
    """The fee and costs already taken from this case's money."""
    taken = session.scalar(
        select(func.coalesce(func.sum(MoneyLeg.fen), 0)).where(
            MoneyLeg.case_id == case_id, MoneyLeg.account == Account.FEES
        )
    )
    return -int(taken or 0)


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
