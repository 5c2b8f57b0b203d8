"""Money arriving: the court's bank statement read into the journal, each line once, each placed with what
caused it.

A page of the statement is recorded in one transaction with the cursor, so a crash or a lost reply
between the bank and the journal reads the page again, and a line whose reference is known changes
nothing: nothing is lost and nothing is counted twice. A credit is placed, in this order:
1. a deduction we sent (its remittance names the deduction's key): the deduction's reply already recorded
   the payment, so the line only journals the money, once;
2. money to a case's sub-account that the case owes (a debtor or anyone for them paying on their own):
   recorded as the case's payment (source "transfer", its events `casebook.cases.payment_events`, as a
   person's payment), then journaled; a case paid in full is marked paid and its measures are released as
   for any payment;
3. anything else (no sub-account, one we never issued, a case that ended, more than is owed) waits as
   unidentified money (不明款) for a person: never silently a case's.
Money placed with a case is split by `models.money.split`, and its applicant told of their part. A page
costs a few statements, whatever its lines: what they name is read at once (`_PageOf`) and what they
place written at once (`Placer`). A reversal undoes the entries of the line it
names (and a payment that line recorded); a debit we did not order is left to reconciliation and a person.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Row, delete, select, update
from sqlalchemy.orm import Session

from clerk.casebook import cases, notices
from clerk.context import Context
from clerk.money import journal
from clerk.store import audit, bulk, db, locks
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

#: How long one ask for new entries waits at the bank while a run listens (below the client's timeout).
LONG_POLL_S = 5.0

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


def _hold_cursor(session: Session) -> StatementCursor:
    """The cursor's row, locked for the transaction (made at the first page ever): a second run reading
    the same page waits here, then finds its lines known."""
    db.insert_missing(session, db.table(StatementCursor), [{"id": 1, "position": 0}])
    row = session.get(StatementCursor, 1, with_for_update=True)
    assert row is not None
    return row


@dataclass(frozen=True)
class Recorded:
    """A statement line as the page wrote it: what placing its money needs (a `StatementLine` row has
    the same)."""

    id: int
    amount_fen: int
    value_date: dt.date


@dataclass
class Held:
    """A case as placing money reads it, under its lock: its terms, status and payments, as a row (a page
    of the statement may touch thousands)."""

    id: int
    case_number: str
    status: str
    principal_fen: int
    judgment_interest_fen: int
    costs_fen: int
    performance_due_on: dt.date
    payments: list[rules.Payment] = field(default_factory=list)

    def owed(self, on: dt.date) -> rules.Owed:
        return cases.owed_with(self, self.payments, on)


_HELD = (
    Case.id,
    Case.case_number,
    Case.status,
    Case.principal_fen,
    Case.judgment_interest_fen,
    Case.costs_fen,
    Case.performance_due_on,
)


def held_cases(session: Session, case_ids: Iterable[int]) -> dict[int, Held]:
    """Lock the cases (`store.locks`) and read them with their payments; ids of no case are left out."""
    held: dict[int, Held] = {}
    for chunk in db.chunks(locks.lock_case_ids(session, case_ids)):
        held.update(
            (row.id, Held(*row))
            for row in db.all_rows(session, select(*_HELD).where(db.among(session, Case.id, chunk)))
        )
        for case_id, paid_on, amount in db.all_rows(
            session,
            select(Payment.case_id, Payment.paid_on, Payment.amount_fen).where(
                db.among(session, Payment.case_id, chunk)
            ),
        ):
            held[case_id].payments.append(rules.Payment(paid_on, amount))  # owed_on orders them
    return held


@dataclass
class Placer:
    """Places money with cases in the caller's transaction: payments as they come (the cases' objects,
    locked by the caller, see them at once), the journal's entries and every event written together by
    `flush`, in order: a page of the statement costs a few statements, not a few per line."""

    session: Session
    actor: str
    today: dt.date
    fees: dict[int, int] = field(default_factory=dict)  # fee and costs taken, by case, as placed so far
    _items: list[journal.Posting | audit.Entry] = field(default_factory=list)
    _payments: list[dict[str, object]] = field(default_factory=list)
    _told: list[notices.Draft] = field(default_factory=list)  # applicants told of money for them
    _paid: list[int] = field(default_factory=list)  # cases this placing paid in full

    def event(self, action: str, case_number: str | None = None, **payload: object) -> None:
        self._items.append(audit.Entry(action, self.actor, case_number, payload))

    def post(self, posting: journal.Posting) -> None:
        self._items.append(posting)

    def place(
        self,
        case: Held,
        line: Recorded | StatementLine,
        kind: str,
        legs: tuple[money.Leg, ...],
        owed: rules.Owed,
        *,
        counted: int = 0,
        action_id: int | None = None,
        reason: str | None = None,
        payment: str | None = None,
    ) -> money.Split:
        """The line's money placed with `case` (the entry `kind` with its `legs`: it reached the case's
        `received`), then split by the law's order: the fee and costs not yet taken, then what the case
        owed on the money's day (`owed`; `counted`: what of this money `owed` already counts as paid, as a
        deduction's reply recorded its payment), the rest the debtor's.

        With `payment` (its source: a debtor's "transfer", or unidentified money a person "assigned"), the
        money is first recorded as the case's payment on the day it arrived; the caller checked it may
        (`cannot_take`) and holds the case's lock. A case paid in full is marked paid."""
        if payment is not None:
            self._pay(case, line, owed, payment)
        self.post(journal.Posting(kind, legs, case.case_number, line, action_id, reason))
        if case.id not in self.fees:
            self.fees.update(journal.fees_taken(self.session, [case.id]))
        fees_due = max(owed.fee + owed.costs - self.fees[case.id], 0)
        parts = money.split(line.amount_fen, fees_due, max(owed.remaining + counted - fees_due, 0))
        self.fees[case.id] += parts.fees
        self.post(journal.Posting("split", money.split_entry(case.id, parts), case.case_number, line))
        if parts.applicant:  # 法发〔2017〕6号 art. 10: the applicant told of the money
            params = {
                "case": case.case_number,
                "amount_fen": parts.applicant,
                "value_date": line.value_date.isoformat(),
            }
            self._told.append(notices.Draft(case.id, "applicant", "money.arrived", params))
        return parts

    def _pay(self, case: Held, line: Recorded | StatementLine, owed: rules.Owed, source: str) -> None:
        paid_on = line.value_date  # `owed` is what the case owed on it, before this money
        case.payments.append(rules.Payment(paid_on, line.amount_fen))
        events = cases.payment_events(
            case, line.amount_fen, paid_on, owed, case.owed(paid_on), actor=self.actor, source=source
        )
        self._payments.append(
            {"case_id": case.id, "paid_on": paid_on, "amount_fen": line.amount_fen, "source": source}
        )
        if len(events) > 1:
            case.status = CaseStatus.PAID
            self._paid.append(case.id)
        self._items.extend(events)

    def flush(self) -> None:
        """Write what was placed: payments, cases paid, entries with their legs, and every event in order."""
        bulk.insert_rows(self.session, db.table(Payment), self._payments)
        for chunk in db.chunks(self._paid):
            self.session.execute(
                update(Case).where(db.among(self.session, Case.id, chunk)).values(status=CaseStatus.PAID)
            )
        db.expire_cached(self.session, Case, self._paid)
        postings = [item for item in self._items if isinstance(item, journal.Posting)]
        written = iter(journal.write(self.session, postings, actor=self.actor))
        audit.append_many(
            self.session, [next(written) if isinstance(i, journal.Posting) else i for i in self._items]
        )
        notices.notify_many(self.session, self._told)
        self._items.clear()
        self._told.clear()
        self._payments.clear()
        self._paid.clear()


def record_page(session: Session, page: Statement, actor: str, today: dt.date, master: str) -> Arrived:
    """Record and place one page of the statement, and move the cursor past it, in the caller's
    transaction. Lines already recorded (by reference) are skipped. What the page's lines need (their
    sub-accounts, the deductions they name, their cases under lock, the fees taken) is read once."""
    done = Arrived()
    if not page.lines:
        return done
    at = _hold_cursor(session)  # runs that overlap (one listening, the next) record pages one at a time
    known = set(
        session.scalars(
            select(StatementLine.reference).where(
                db.among(session, StatementLine.reference, [x.reference for x in page.lines])
            )
        )
    )
    new: list[Line] = []
    for line in page.lines:
        if line.reference in known:
            done.placed["repeated"] += 1
        else:
            known.add(line.reference)
            new.append(line)
    ids = bulk.insert_rows(
        session,
        db.table(StatementLine),
        [
            {
                "seq": line.seq,
                "reference": line.reference,
                "booked_at": line.booked_at,
                "value_date": line.value_date,
                "amount_fen": line.amount_fen,
                "credit": line.credit,
                "subaccount": None if line.subaccount == master else line.subaccount,
                "reversal_of": line.reversal_of,
                "counterparty_account": line.counterparty_account,
                "counterparty_name": line.counterparty_name,
                "remittance": line.remittance,
            }
            for line in new
        ],
    )
    page_of = _PageOf.read(session, new, master)
    in_page = {line.reference for line in new}
    placer = Placer(session, actor, today, journal.fees_taken(session, page_of.cases))
    for line, row_id in zip(new, ids, strict=True):
        done.lines += 1
        row = Recorded(row_id, line.amount_fen, line.value_date)
        if line.reversal_of is not None:
            if line.reversal_of in in_page:  # what it reverses was placed by this page: written first
                placer.flush()
            how = _reverse(placer, page_of, row, line.reversal_of)
        else:
            how = _place(placer, page_of, row, line)
        done.placed[how] += 1
        if how in ("deduction", "transfer"):
            done.fen += line.amount_fen
    placer.flush()
    at.position = max(at.position, page.last)
    return done


@dataclass(frozen=True)
class _PageOf:
    """What a page's lines name, read at once: sub-accounts' cases, the deductions their remittance names,
    and those cases, locked, with their payments."""

    subaccounts: dict[str, int]  # number -> case id
    deductions: dict[str, tuple[int, int, int]]  # key -> (action id, case id, fen it moved)
    cases: dict[int, Held]

    @classmethod
    def read(cls, session: Session, lines: list[Line], master: str) -> _PageOf:
        numbers = {x.subaccount for x in lines if x.subaccount is not None and x.subaccount != master}
        subs: dict[str, int] = {}
        for chunk in db.chunks(sorted(numbers)):
            subs.update(
                session.execute(
                    select(Subaccount.number, Subaccount.case_id).where(
                        db.among(session, Subaccount.number, chunk)
                    )
                )
                .tuples()
                .all()
            )
        keys = sorted({m.group(1) for x in lines if x.credit and (m := DEDUCTION.search(x.remittance))})
        deductions: dict[str, tuple[int, int, int]] = {}
        for chunk in db.chunks(keys):
            for key, action_id, case_id, status, result in session.execute(
                select(
                    MeasureAction.idempotency_key,
                    MeasureAction.id,
                    ControlMeasure.case_id,
                    MeasureAction.status,
                    MeasureAction.result,
                )
                .join(ControlMeasure, ControlMeasure.id == MeasureAction.measure_id)
                .where(
                    db.among(session, MeasureAction.idempotency_key, chunk),
                    MeasureAction.kind == ActionKind.DEDUCT,
                )
            ):
                moved = (result or {}).get("deducted_fen", 0) if status == ActionStatus.DONE else 0
                deductions[key] = (action_id, case_id, int(moved))
        wanted = set(subs.values()) | {case_id for _, case_id, _ in deductions.values()}
        return cls(subs, deductions, held_cases(session, wanted))


def _place(placer: Placer, page: _PageOf, row: Recorded, line: Line) -> str:
    if not line.credit:
        placer.event("money.unexpected_debit", line=row.id)
        return "debit"
    case_id = None if line.subaccount is None else page.subaccounts.get(line.subaccount)
    match = DEDUCTION.search(line.remittance)
    if match and match.group(1) in page.deductions:
        action_id, deducted_for, moved = page.deductions[match.group(1)]
        case = page.cases[deducted_for]
        legs = money.arrived(case_id, line.amount_fen, case.id)
        owed = case.owed(line.value_date)
        placer.place(case, row, "arrived", legs, owed, counted=moved, action_id=action_id)
        return "deduction"
    if case_id is not None:
        case = page.cases[case_id]
        owed = case.owed(line.value_date)
        if line.value_date <= placer.today and cannot_take(case, line.amount_fen, owed) is None:
            legs = money.arrived(case_id, line.amount_fen, case.id)
            placer.place(case, row, "arrived", legs, owed, payment="transfer")
            return "transfer"
    placer.post(journal.Posting("unidentified", money.arrived(case_id, line.amount_fen, None), line=row))
    return "unidentified"


def cannot_take(case: Held, fen: int, owed: rules.Owed) -> str | None:
    """Why `fen` cannot be placed with `case` as its payment (it has ended, or owes less), or None."""
    if case.status not in KEPT:
        return f"{case.case_number} is {case.status}: money cannot be placed with it"
    if fen > owed.remaining:
        return f"{format_yuan(fen)} is more than the {format_yuan(owed.remaining)} {case.case_number} owes"
    return None


def _reverse(placer: Placer, page: _PageOf, row: Recorded, reversal_of: str) -> str:
    """Reverse the entries of the line `reversal_of`, each by an entry of its own, and the payment a
    transfer recorded (a case it had paid in full runs again); what this line was."""
    session = placer.session
    original = session.execute(
        select(
            StatementLine.id, StatementLine.reference, StatementLine.amount_fen, StatementLine.value_date
        ).where(StatementLine.reference == reversal_of)
    ).first()
    entries = [] if original is None else session.execute(
        select(MoneyEntry.id, MoneyEntry.kind, MoneyEntry.case_id, MoneyEntry.action_id)
        .where(MoneyEntry.line_id == original.id)
        .order_by(MoneyEntry.id)
    ).all()  # fmt: skip
    if original is None or not entries:
        placer.event("money.reversal_unmatched", line=row.id)
        return "reversal_unmatched"
    legs = journal.legs_of(session, [e.id for e in entries])
    arrival = entries[0]
    case_id = arrival.case_id
    number = None if case_id is None else session.scalar(select(Case.case_number).where(Case.id == case_id))
    if case_id is not None and case_id not in placer.fees:
        placer.fees.update(journal.fees_taken(session, [case_id]))
    why = f"the bank reversed {reversal_of}"
    for done in reversed(entries):
        placer.post(journal.Posting("reversed", money.reversal(legs[done.id]), number, row, reason=why))
        if case_id is not None:  # a split's fee given back
            placer.fees[case_id] += sum(leg.fen for leg in legs[done.id] if leg.account == money.Account.FEES)
    if arrival.kind == "arrived" and arrival.action_id is None and case_id is not None and number is not None:
        _undo_transfer(placer, page, case_id, number, original)
    return "reversal"


def _undo_transfer(placer: Placer, page: _PageOf, case_id: int, number: str, original: Row[Any]) -> None:
    """The payment a reversed transfer recorded is taken back; a case it had paid in full runs again."""
    session = placer.session
    locks.lock_case_ids(session, [case_id])
    payment = session.scalar(
        select(Payment.id)
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
    session.execute(delete(Payment).where(Payment.id == payment))
    placer.event("payment.reversed", number, amount_fen=original.amount_fen, line=original.id)
    reopened = session.scalar(select(Case.status).where(Case.id == case_id)) == CaseStatus.PAID
    if reopened:
        session.execute(update(Case).where(Case.id == case_id).values(status=CaseStatus.ACTIVE))
        placer.event("case.reopened", number)
    db.expire_cached(session, Case, [case_id])
    held = page.cases.get(case_id)
    if held is not None:  # the page's own view of the case, as the database now has it
        undone = rules.Payment(original.value_date, original.amount_fen)
        if undone in held.payments:
            held.payments.remove(undone)
        held.status = CaseStatus.ACTIVE if reopened else held.status


async def take_statement(
    ctx: Context, bank: CourtBankPort, master: str, pages: int = 1_000, listen_s: float = 0
) -> Arrived:
    """Read the statement from the cursor to its end (at most `pages` pages a run), page by page; the next
    page is asked while one is recorded (it starts where that one ends). A page that fails to record is
    read again by the next run: the one asked meanwhile is dropped. With `listen_s`, keep following it
    that long afterwards: each ask waits up to `LONG_POLL_S` at the bank for a new entry (its push, where
    the bank offers one), so that money is placed within seconds of its booking."""
    done = Arrived()
    deadline = time.monotonic() + listen_s
    page = await bank.entries(await db.read(ctx.sessions, cursor))
    for _ in range(pages):
        if not page.lines:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            page = await bank.entries(await db.read(ctx.sessions, cursor), min(LONG_POLL_S, left))
            continue
        recording = asyncio.ensure_future(
            db.write(ctx.sessions, record_page, page, ctx.actor, ctx.today(), master)
        )
        try:
            following = await bank.entries(page.last)
        finally:
            done.add(await recording)
        page = following
    return done
