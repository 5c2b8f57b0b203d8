"""Money arriving: the court's bank statement read into the journal, each line once, each placed with what
caused it.

A page of the statement is recorded in one transaction with the cursor, so a crash or a lost reply
between the bank and the journal reads the page again, and a line whose reference is known changes
nothing: nothing is lost and nothing is counted twice. A credit is placed, in this order:
1. a deduction we sent (its remittance names the deduction's key): the deduction's reply already recorded
   the payment, so the line only journals the money, once;
2. money to a case's sub-account that the case owes (a debtor or anyone for them paying on their own):
   recorded as the case's payment (`casebook.cases.record_payment`, source "transfer"), then journaled; a
   case paid in full is marked paid and its measures are released as for any payment;
3. anything else (no sub-account, one we never issued, a case that ended, more than is owed) waits as
   unidentified money (不明款) for a person: never silently a case's.
Money placed with a case is split by `models.money.split`. A reversal undoes the entries of the line it
names (and a payment that line recorded); a debit we did not order is left to reconciliation and a person.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from clerk.casebook import cases
from clerk.context import Context
from clerk.money import journal
from clerk.store import audit, db, locks
from connectors.court_bank import CourtBankPort, Statement
from connectors.court_bank import StatementLine as Line
from models import money, rules
from models.status import KEPT, ActionKind, ActionStatus, CaseStatus
from models.tables import (
    Case,
    ControlMeasure,
    MeasureAction,
    MoneyEntry,
    Payment,
    StatementCursor,
    StatementLine,
    Subaccount,
)
from models.tallies import add_fields
from models.values import format_yuan

DEDUCTION = re.compile(r"\bDEDUCTION ([A-Za-z0-9_.:\-]{8,64})\b")


@dataclass
class Arrived:
    """What one read of the statement did, by what each line was."""

    lines: int = 0
    placed: Counter[str] = field(default_factory=Counter)  # deduction, transfer, unidentified, …
    fen: int = 0  # credits placed with a case

    def add(self, other: Arrived) -> None:
        add_fields(self, other)


def cursor(session: Session) -> int:
    row = session.get(StatementCursor, 1)
    return 0 if row is None else row.position


def _advance(session: Session, last: int) -> None:
    row = session.get(StatementCursor, 1, with_for_update=True)
    if row is None:
        session.add(StatementCursor(id=1, position=last))
    elif last > row.position:
        row.position = last


def record_page(session: Session, page: Statement, actor: str, today: dt.date, master: str) -> Arrived:
    """Record and place one page of the statement, and move the cursor past it, in the caller's
    transaction. Lines already recorded (by reference) are skipped."""
    done = Arrived()
    if not page.lines:
        return done
    known = set(
        session.scalars(
            select(StatementLine.reference).where(
                StatementLine.reference.in_([x.reference for x in page.lines])
            )
        )
    )
    for line in page.lines:
        if line.reference in known:
            done.placed["repeated"] += 1
            continue
        known.add(line.reference)
        done.lines += 1
        row = StatementLine(
            seq=line.seq,
            reference=line.reference,
            booked_at=line.booked_at,
            value_date=line.value_date,
            amount_fen=line.amount_fen,
            credit=line.credit,
            subaccount=None if line.subaccount == master else line.subaccount,
            reversal_of=line.reversal_of,
            counterparty_account=line.counterparty_account,
            counterparty_name=line.counterparty_name,
            remittance=line.remittance,
        )
        session.add(row)
        session.flush()
        how = _place(session, row, line, actor, today)
        done.placed[how] += 1
        if how in ("deduction", "transfer"):
            done.fen += line.amount_fen
    _advance(session, page.last)
    return done


def _place(session: Session, row: StatementLine, line: Line, actor: str, today: dt.date) -> str:
    if line.reversal_of is not None:
        return _reverse(session, row, actor)
    if not line.credit:
        audit.append(session, "money.unexpected_debit", actor=actor, payload={"reference": row.reference})
        return "debit"
    sub = (
        None
        if row.subaccount is None
        else session.scalar(select(Subaccount).where(Subaccount.number == row.subaccount))
    )
    bank_case = None if sub is None else sub.case_id
    match = DEDUCTION.search(line.remittance)
    if match:
        found = session.execute(
            select(MeasureAction, ControlMeasure.case_id)
            .join(ControlMeasure, ControlMeasure.id == MeasureAction.measure_id)
            .where(MeasureAction.idempotency_key == match.group(1), MeasureAction.kind == ActionKind.DEDUCT)
        ).first()
        if found is not None:
            action, case_id = found
            case = session.get(Case, case_id)
            assert case is not None
            locks.lock_case(session, case.id)
            moved = (action.result or {}).get("deducted_fen", 0) if action.status == ActionStatus.DONE else 0
            owed = cases.owed(case, line.value_date)
            legs = money.arrived(bank_case, line.amount_fen, case.id)
            place(session, case, row, "arrived", legs, owed, actor, counted=int(moved), action_id=action.id)
            return "deduction"
    if sub is not None:
        case = session.get(Case, sub.case_id)
        assert case is not None
        locks.lock_case(session, case.id)
        owed = cases.owed(case, line.value_date)
        if line.value_date <= today and cannot_take(case, line.amount_fen, owed) is None:
            legs = money.arrived(bank_case, line.amount_fen, case.id)
            place_as_payment(session, case, row, "arrived", legs, owed, actor, today, source="transfer")
            return "transfer"
    journal.post(
        session, "unidentified", money.arrived(bank_case, line.amount_fen, None), actor=actor, line=row
    )
    return "unidentified"


def cannot_take(case: Case, fen: int, owed: rules.Owed) -> str | None:
    """Why `fen` cannot be placed with `case` as its payment (it has ended, or owes less), or None."""
    if case.status not in KEPT:
        return f"{case.case_number} is {case.status}: money cannot be placed with it"
    if fen > owed.remaining:
        return f"{format_yuan(fen)} is more than the {format_yuan(owed.remaining)} {case.case_number} owes"
    return None


def place(
    session: Session,
    case: Case,
    row: StatementLine,
    kind: str,
    legs: tuple[money.Leg, ...],
    owed: rules.Owed,
    actor: str,
    *,
    counted: int = 0,
    action_id: int | None = None,
    reason: str | None = None,
) -> money.Split:
    """The statement line's money placed with `case` (the entry `kind` with its `legs`: it reached the
    case's `received`), then split by the law's order: the fee and costs not yet taken, then what the case
    owed on the money's day (`owed`; `counted`: what of this money `owed` already counts as paid, as a
    deduction's reply recorded its payment), the rest the debtor's."""
    journal.post(
        session,
        kind,
        legs,
        actor=actor,
        case_number=case.case_number,
        line=row,
        action_id=action_id,
        reason=reason,
    )
    fees_due = max(owed.fee + owed.costs - journal.fees_taken(session, case.id), 0)
    parts = money.split(row.amount_fen, fees_due, max(owed.remaining + counted - fees_due, 0))
    journal.post(
        session,
        "split",
        money.split_entry(case.id, parts),
        actor=actor,
        case_number=case.case_number,
        line=row,
    )
    return parts


def place_as_payment(
    session: Session,
    case: Case,
    row: StatementLine,
    kind: str,
    legs: tuple[money.Leg, ...],
    owed: rules.Owed,
    actor: str,
    today: dt.date,
    *,
    source: str,
    reason: str | None = None,
) -> money.Split:
    """`place`, the money recorded first as the case's payment on the day it arrived (`source`: a
    debtor's transfer, or unidentified money a person assigned)."""
    cases.record_payment(
        session, case.case_number, row.amount_fen, row.value_date, actor=actor, today=today, again=True,
        source=source,
    )  # fmt: skip
    return place(session, case, row, kind, legs, owed, actor, reason=reason)


def _reverse(session: Session, row: StatementLine, actor: str) -> str:
    original = session.scalar(select(StatementLine).where(StatementLine.reference == row.reversal_of))
    entries = (
        []
        if original is None
        else list(
            session.scalars(
                select(MoneyEntry).where(MoneyEntry.line_id == original.id).order_by(MoneyEntry.id)
            )
        )
    )
    if original is None or not entries:
        audit.append(session, "money.reversal_unmatched", actor=actor, payload={"reference": row.reference})
        return "reversal_unmatched"
    for done in reversed(entries):
        legs = journal.legs_of(session, [done.id])
        case = None if done.case_id is None else session.get(Case, done.case_id)
        case_number = None if case is None else case.case_number
        journal.post(
            session, "reversed", money.reversal(legs), actor=actor, case_number=case_number, line=row,
            reason=f"the bank reversed {row.reversal_of}",
        )  # fmt: skip
    arrival = entries[0]
    if arrival.kind == "arrived" and arrival.action_id is None and arrival.case_id is not None:
        _undo_transfer(session, arrival.case_id, original, actor)
    return "reversal"


def _undo_transfer(session: Session, case_id: int, original: StatementLine, actor: str) -> None:
    """The payment a reversed transfer recorded is taken back; a case it had paid in full runs again."""
    case = session.get(Case, case_id)
    assert case is not None
    locks.lock_case(session, case.id)
    payment = session.scalar(
        select(Payment)
        .where(
            Payment.case_id == case_id,
            Payment.source == "transfer",
            Payment.amount_fen == original.amount_fen,
            Payment.paid_on == original.value_date,
        )
        .order_by(Payment.id.desc())
        .limit(1)
    )
    if payment is None:
        return
    session.execute(delete(Payment).where(Payment.id == payment.id))
    session.expire(case, ["payments"])
    audit.append(
        session,
        "payment.reversed",
        actor=actor,
        case_number=case.case_number,
        payload={"amount_fen": original.amount_fen, "bank_reference": original.reference},
    )
    if case.status == CaseStatus.PAID:
        case.status = CaseStatus.ACTIVE
        audit.append(session, "case.reopened", actor=actor, case_number=case.case_number, payload={})


async def take_statement(ctx: Context, bank: CourtBankPort, master: str, pages: int = 1_000) -> Arrived:
    """Read the statement from the cursor to its end (at most `pages` pages a run), page by page."""
    done = Arrived()
    for _ in range(pages):
        after = await db.read(ctx.sessions, cursor)
        page = await bank.entries(after)
        if not page.lines:
            break
        done.add(await db.write(ctx.sessions, record_page, page, ctx.actor, ctx.today(), master))
    return done
