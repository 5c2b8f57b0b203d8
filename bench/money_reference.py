"""The reference statement reader: the minimal correct implementation of what the clerk does with the court's
bank statement, the yardstick `python -m bench money` measures it against. Never part of the product.

It keeps its own case book (`bench.reference.load`'s cases and payments, plus the money tables below) in
SQLite through the standard library's driver, reads the statement through the clerk's adapter
(`connectors.court_bank`: the same wire, retries and XML parsing) and applies the clerk's pure rules
(`models.rules` for what a case owes, `models.money` for the journal's legs and the split). A page at a
time, in one transaction with the cursor:

1. lines whose bank reference is known are skipped (a repeat);
2. each new line is written; a credit to a sub-account of a running case that owes at least that much, on
   or before today, becomes the case's payment (a case paid in full is marked paid), is journaled as
   arrived and split (fee and costs first, then the applicant, the rest the debtor's); anything else is
   journaled as unidentified money; a reversal reverses the entries of the line it names (and the
   payment it recorded); a debit is an audit event;
3. every entry's legs balance, and every entry, payment and case paid is an audit event in a hash chain;
   the applicant of a case whose split gave them money is told (a notice written down).

It places no deductions (its book has no measures; the benchmark's statement has none).

`python -m bench.money_reference load DB CASE_FILE`, `open DB`, `take DB`: the last two print one JSON
line of figures (the bank in CLERK_COURT_BANK_URL).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

from bench.reference import Chain, Db, _now, load
from clerk.settings import get_settings
from connectors.court_bank import CourtBankConnector, StatementLine
from connectors.http import ClientLimits, RegistryClient
from models import money, rules
from models.status import KEPT
from models.supervision import bureau_today

MONEY_SCHEMA = """
CREATE TABLE m_subaccounts (number TEXT PRIMARY KEY, case_id INTEGER NOT NULL UNIQUE REFERENCES cases(id));
CREATE TABLE m_lines (id INTEGER PRIMARY KEY, reference TEXT UNIQUE NOT NULL, seq INTEGER NOT NULL,
  value_date TEXT NOT NULL, amount_fen BIGINT NOT NULL, credit BOOLEAN NOT NULL, subaccount TEXT,
  reversal_of TEXT, counterparty_account TEXT, counterparty_name TEXT, remittance TEXT NOT NULL);
CREATE TABLE m_entries (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, case_id INTEGER, line_id INTEGER
  NOT NULL REFERENCES m_lines(id));
CREATE INDEX m_entries_line ON m_entries (line_id);
CREATE TABLE m_legs (entry_id INTEGER NOT NULL REFERENCES m_entries(id), account TEXT NOT NULL,
  case_id INTEGER, fen BIGINT NOT NULL);
CREATE INDEX m_legs_case ON m_legs (case_id, account);
CREATE TABLE m_cursor (position INTEGER NOT NULL);
INSERT INTO m_cursor VALUES (0)
"""


def _bank() -> CourtBankConnector:
    conf = get_settings()
    assert conf.court_bank_url, "CLERK_COURT_BANK_URL"
    return CourtBankConnector(
        RegistryClient(
            "court-bank",
            conf.court_bank_url,
            conf.court_bank_credential,
            limits=ClientLimits(requests_per_second=conf.court_bank_requests_per_second),
        )
    )


async def open_all(path: str) -> int:
    """A sub-account for every case without one, 20 requests in flight."""
    db = Db(path)
    bank = _bank()
    todo = db.rows(
        "SELECT id, case_number FROM cases WHERE id NOT IN (SELECT case_id FROM m_subaccounts) ORDER BY id"
    )
    gate = asyncio.Semaphore(20)

    async def one(case_id: int, number: str) -> tuple[str, int]:
        async with gate:
            return await bank.open_subaccount(f"reference-{case_id:08d}", number), case_id

    try:
        opened = await asyncio.gather(*(one(*row) for row in todo))
    finally:
        await bank.aclose()
    with db.transaction():
        db.many("INSERT INTO m_subaccounts (number, case_id) VALUES (?, ?)", opened)
    db.close()
    return len(opened)


class Page:
    """One page's writes, kept in lists and written at once (`write`), then read by a reversal."""

    def __init__(self, db: Db, chain: Chain, next_line: int, next_entry: int) -> None:
        self.db, self.chain = db, chain
        self.next_line, self.next_entry = next_line, next_entry
        self.lines: list[tuple[Any, ...]] = []
        self.entries: list[tuple[Any, ...]] = []
        self.legs: list[tuple[Any, ...]] = []
        self.payments: list[tuple[Any, ...]] = []
        self.paid: list[tuple[int]] = []
        self.notices: list[tuple[Any, ...]] = []
        self.events: list[tuple[str, str | None, dict[str, Any]]] = []

    def post(self, kind: str, legs: tuple[money.Leg, ...], line_id: int, number: str | None) -> None:
        checked = money.entry(*legs)
        entry_id = self.next_entry
        self.next_entry += 1
        case_id = next((leg.case_id for leg in checked if leg.case_id is not None), None)
        self.entries.append((entry_id, kind, case_id, line_id))
        self.legs += [(entry_id, leg.account.value, leg.case_id, leg.fen) for leg in checked]
        legs_by_account = {leg.account.value: leg.fen for leg in checked}
        self.events.append(
            (f"money.{kind}", number, {"entry": entry_id, "legs": legs_by_account, "line": line_id})
        )

    def write(self) -> None:
        self.db.many(
            "INSERT INTO m_lines (id, reference, seq, value_date, amount_fen, credit, subaccount, "
            "reversal_of, counterparty_account, counterparty_name, remittance) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            self.lines,
        )
        self.db.many("INSERT INTO m_entries (id, kind, case_id, line_id) VALUES (?,?,?,?)", self.entries)
        self.db.many("INSERT INTO m_legs (entry_id, account, case_id, fen) VALUES (?,?,?,?)", self.legs)
        self.db.many("INSERT INTO payments (case_id, paid_on, amount_fen) VALUES (?,?,?)", self.payments)
        self.db.many("UPDATE cases SET status = 'paid' WHERE id = ?", self.paid)
        self.db.many(
            "INSERT INTO notices (case_id, template, params, created_at) VALUES (?,?,?,?)", self.notices
        )
        self.chain.append(self.events)
        for rows in (
            self.lines,
            self.entries,
            self.legs,
            self.payments,
            self.paid,
            self.events,
            self.notices,
        ):
            rows.clear()


def _record(db: Db, chain: Chain, lines: list[StatementLine], last: int, today: dt.date) -> dict[str, int]:
    counts: dict[str, int] = {}
    known = {
        r
        for (r,) in db.where_in(
            "SELECT reference FROM m_lines WHERE reference IN ({in})", [x.reference for x in lines]
        )
    }
    [(top_line,)] = db.rows("SELECT coalesce(max(id), 0) FROM m_lines")
    [(top_entry,)] = db.rows("SELECT coalesce(max(id), 0) FROM m_entries")
    page = Page(db, chain, top_line + 1, top_entry + 1)
    subs = dict(
        db.where_in(
            "SELECT number, case_id FROM m_subaccounts WHERE number IN ({in})",
            sorted({x.subaccount for x in lines if x.subaccount}),
        )
    )
    ids = sorted(set(subs.values()))
    cases = {
        row[0]: list(row[1:])
        for row in db.where_in(
            "SELECT id, case_number, status, principal_fen, judgment_interest_fen, costs_fen, "
            "performance_due_on FROM cases WHERE id IN ({in})",
            ids,
        )
    }
    paid: dict[int, list[rules.Payment]] = {i: [] for i in ids}
    for case_id, on, fen in db.where_in(
        "SELECT case_id, paid_on, amount_fen FROM payments WHERE case_id IN ({in})", ids
    ):
        paid[case_id].append(rules.Payment(dt.date.fromisoformat(on), fen))
    fees = dict.fromkeys(ids, 0) | dict(
        db.where_in(
            "SELECT case_id, -sum(fen) FROM m_legs WHERE account = 'fees' AND case_id IN ({in}) "
            "GROUP BY case_id",
            ids,
        )
    )
    for x in lines:
        if x.reference in known:
            counts["repeated"] = counts.get("repeated", 0) + 1
            continue
        known.add(x.reference)
        line_id = page.next_line
        page.next_line += 1
        page.lines.append(
            (
                line_id,
                x.reference,
                x.seq,
                x.value_date.isoformat(),
                x.amount_fen,
                x.credit,
                x.subaccount,
                x.reversal_of,
                x.counterparty_account,
                x.counterparty_name,
                x.remittance,
            )
        )
        how = "unidentified"
        case_id = subs.get(x.subaccount) if x.subaccount else None
        if x.reversal_of is not None:
            page.write()
            how = _reverse(db, page, line_id, x.reversal_of)
            fees.clear()
        elif not x.credit:
            page.events.append(("money.unexpected_debit", None, {"reference": x.reference}))
            how = "debit"
        elif case_id is not None:
            number, status, principal, interest, costs, due = cases[case_id]
            debt = rules.Debt(principal, interest, costs, dt.date.fromisoformat(due))
            owed = rules.owed_on(debt, paid[case_id], x.value_date)
            if status in KEPT and x.amount_fen <= owed.remaining and x.value_date <= today:
                how = "transfer"
                paid[case_id].append(rules.Payment(x.value_date, x.amount_fen))
                page.payments.append((case_id, x.value_date.isoformat(), x.amount_fen))
                page.events.append(
                    (
                        "payment.recorded",
                        number,
                        {
                            "amount_fen": x.amount_fen,
                            "paid_on": x.value_date.isoformat(),
                            "source": "transfer",
                            "remaining_before_fen": owed.remaining,
                            "remaining_after_fen": owed.remaining - x.amount_fen,
                        },
                    )
                )
                if x.amount_fen == owed.remaining:
                    cases[case_id][1] = "paid"
                    page.paid.append((case_id,))
                    page.events.append(("case.paid", number, {"status_before": status}))
                page.post("arrived", money.arrived(case_id, x.amount_fen, case_id), line_id, number)
                if case_id not in fees:
                    [(taken,)] = db.rows(
                        "SELECT coalesce(-sum(fen), 0) FROM m_legs WHERE account = 'fees' AND case_id = ?",
                        [case_id],
                    )
                    fees[case_id] = taken
                fees_due = max(owed.fee + owed.costs - fees[case_id], 0)
                parts = money.split(x.amount_fen, fees_due, max(owed.remaining - fees_due, 0))
                fees[case_id] += parts.fees
                page.post("split", money.split_entry(case_id, parts), line_id, number)
                if parts.applicant:  # the applicant told of the money
                    params = {
                        "case": number,
                        "amount_fen": parts.applicant,
                        "value_date": x.value_date.isoformat(),
                    }
                    page.notices.append((case_id, "money.arrived", json.dumps(params), _now()))
        if how == "unidentified":
            page.post("unidentified", money.arrived(case_id, x.amount_fen, None), line_id, None)
        counts[how] = counts.get(how, 0) + 1
    page.write()
    db.run("UPDATE m_cursor SET position = max(position, ?)", [last])
    return counts


def _reverse(db: Db, page: Page, line_id: int, reversal_of: str) -> str:
    found = db.rows("SELECT id, amount_fen, value_date FROM m_lines WHERE reference = ?", [reversal_of])
    entries = (
        []
        if not found
        else db.rows("SELECT id, kind, case_id FROM m_entries WHERE line_id = ? ORDER BY id", [found[0][0]])
    )
    if not entries:
        page.events.append(("money.reversal_unmatched", None, {"reference": reversal_of}))
        return "reversal_unmatched"
    for entry_id, _, _ in reversed(entries):
        legs = [
            money.Leg(money.Account(a), c, f)
            for a, c, f in db.rows("SELECT account, case_id, fen FROM m_legs WHERE entry_id = ?", [entry_id])
        ]
        page.post("reversed", money.reversal(legs), line_id, None)
    _, kind, case_id = entries[0]
    if kind == "arrived" and case_id is not None:  # a transfer: its payment is taken back
        _, amount, value_date = found[0]
        db.run(
            "DELETE FROM payments WHERE rowid = (SELECT max(rowid) FROM payments WHERE case_id = ? AND "
            "amount_fen = ? AND paid_on = ?)",
            [case_id, amount, value_date],
        )
        db.run("UPDATE cases SET status = 'active' WHERE id = ? AND status = 'paid'", [case_id])
    return "reversal"


async def take(path: str) -> dict[str, Any]:
    """Read the statement from the cursor to its end; figures."""
    db = Db(path)
    chain = Chain(db)
    bank = _bank()
    today = bureau_today()  # the bank's value dates are China's days, as the clerk's are
    counts: dict[str, int] = {}
    started, cpu = time.perf_counter(), time.process_time()
    while True:
        [(after,)] = db.rows("SELECT position FROM m_cursor")
        page = await bank.entries(after)
        if not page.lines:
            break
        head, events = chain.head, chain.events
        try:
            with db.transaction():
                done = _record(db, chain, list(page.lines), page.last, today)
        except BaseException:
            chain.rollback_to(head, events)
            raise
        for how, n in done.items():
            counts[how] = counts.get(how, 0) + n
    seconds = time.perf_counter() - started
    await bank.aclose()
    [(fen_sum,)] = db.rows("SELECT coalesce(sum(fen), 0) FROM m_legs")
    db.close()
    lines = sum(n for how, n in counts.items() if how != "repeated")
    return {
        "seconds": seconds,
        "cpu_s": time.process_time() - cpu,
        "lines": lines,
        "placed": counts,
        "journal_sum": fen_sum,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> int:
    command, path = sys.argv[1], sys.argv[2]
    if command == "load":
        load(path, Path(sys.argv[3]))
        db = Db(path)
        for statement in MONEY_SCHEMA.split(";"):
            if statement.strip():
                db.run(statement)
        db.close()
        return 0
    if command == "open":
        print(json.dumps({"opened": asyncio.run(open_all(path))}))
        return 0
    if command == "take":
        print(json.dumps(asyncio.run(take(path))))
        return 0
    raise SystemExit(f"unknown command {command!r}: load, open or take")


if __name__ == "__main__":
    sys.exit(main())
