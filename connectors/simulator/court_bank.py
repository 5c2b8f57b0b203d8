"""The court's bank, simulated: the enforcement-money account with a virtual sub-account per case, its
booked entries (camt.054) and closing balances (camt.053), as `connectors/court_bank.py` reads them.

Money arrives three ways: a deduction cleared from a debtor's bank (`receive`, wired to the banks' ledgers
as their `clearing`), a payment by a debtor or anyone else (`credit`, also `POST /_sim/credit`), and what a
test injects. What a bank gets wrong, on purpose (`Hostile.repeat_entries`, and `/_sim/error`):
- an entry delivered twice under one reference; a late entry (an old value date); a reversal;
- `unlisted`: money booked and counted in the balances but never listed in the entries;
- `phantom`: an entry listed whose money never reached the balances;
- `fen_off`: one account's closing balance one fen off.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import itertools
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connectors.court_bank import CAMT053, CAMT054
from connectors.simulator.base import CONTROL_FAULTS, READ_FAULTS, Refusal, RegistrySimulator
from connectors.simulator.faults import Fault
from models.values import format_yuan

MASTER = "95588000000000000001"


@dataclass
class Entry:
    seq: int
    reference: str
    booked_at: dt.datetime
    value_date: dt.date
    amount_fen: int
    credit: bool
    account: str | None  # the sub-account credited or debited; None: the master account
    payer_account: str | None = None
    payer_name: str | None = None
    remittance: str = ""
    reversal_of: str | None = None
    listed: bool = True  # shown in the entries
    counted: bool = True  # moved the balances


@dataclass
class CourtBankBooks:
    """What the bank holds: sub-accounts, entries, and the errors injected into its balances."""

    master: str = MASTER
    by_key: dict[str, str] = field(default_factory=dict)
    cases: dict[str, str] = field(default_factory=dict)  # sub-account -> case number
    of_case: dict[str, str] = field(default_factory=dict)  # case number -> its newest sub-account
    entries: list[Entry] = field(default_factory=list)
    off: dict[str, int] = field(default_factory=dict)  # account -> fen added to its reported balance
    _numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _refs: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _balances: tuple[tuple[Any, ...], list[tuple[str, int]]] | None = None

    def open(self, key: str, case_number: str) -> str:
        if key not in self.by_key:
            number = f"{self.master[:12]}{next(self._numbers) + 10_000_000:08d}"
            self.by_key[key], self.cases[number], self.of_case[case_number] = number, case_number, number
        return self.by_key[key]

    def book(self, amount_fen: int, account: str | None, now: dt.datetime, **details: Any) -> Entry:
        reference = details.pop("reference", None) or f"CB{next(self._refs):012d}"
        value_date = details.pop("value_date", None) or now.date()
        entry = Entry(
            len(self.entries) + 1, reference, now, value_date, amount_fen, details.pop("credit", True),
            None if account == self.master else account, **details,
        )  # fmt: skip
        self.entries.append(entry)
        return entry

    def listed(self, after: int, limit: int) -> list[Entry]:
        """The entries the statement shows after sequence `after`, at most `limit`."""
        return list(
            itertools.islice((e for e in itertools.islice(self.entries, after, None) if e.listed), limit)
        )

    def balances(self, through: int) -> dict[str, int]:
        """Each account's closing balance as of entry `through`: the master account (the whole money at the
        bank) first, then every sub-account opened. (Kept for the pages of one statement of balances:
        entries are only ever added.)"""
        state = (through, len(self.cases), tuple(self.off.items()))
        if self._balances is None or self._balances[0] != state:
            totals = dict.fromkeys([self.master, *self.cases], 0)
            for entry in self.entries[:through]:
                if entry.counted:
                    signed = entry.amount_fen if entry.credit else -entry.amount_fen
                    totals[self.master] += signed
                    if entry.account in self.cases:  # one we never issued: the money sits on the master
                        totals[entry.account] += signed
            self._balances = (state, [(n, fen + self.off.get(n, 0)) for n, fen in totals.items()])
        return dict(self._balances[1])

    def balances_page(self, through: int, offset: int, limit: int) -> list[tuple[str, int]]:
        self.balances(through)
        assert self._balances is not None
        return self._balances[1][offset : offset + limit]


class CourtBankSimulator(RegistrySimulator):
    kind = "court_bank"

    def __init__(self, code: str, credential: str, **options: Any) -> None:
        self.books = CourtBankBooks()
        super().__init__(code, credential, **options)

    def routes(self) -> list[Route]:
        return [
            Route("/v1/health", self.endpoint(frozenset(), self.health)),
            Route(
                "/v1/subaccounts",
                self.endpoint(CONTROL_FAULTS - {Fault.LATER}, self.open_subaccount),
                methods=["POST"],
            ),
            Route("/v1/entries", self.endpoint(READ_FAULTS | {Fault.GARBAGE}, self.list_entries)),
            Route("/v1/balances", self.endpoint(READ_FAULTS | {Fault.GARBAGE}, self.list_balances)),
            Route("/_sim/credit", self._credit, methods=["POST"]),
            Route("/_sim/credits", self._credits, methods=["POST"]),
            Route("/_sim/reverse", self._reverse, methods=["POST"]),
            Route("/_sim/error", self._error, methods=["POST"]),
            Route("/_sim/books", self._books),
        ]

    def now(self) -> dt.datetime:
        return dt.datetime.combine(self.ledger.today, dt.datetime.now(dt.UTC).timetz())

    # --- money arriving (in process: tests, the banks' clearing; over HTTP: /_sim/) ---

    def receive(self, to: str, amount_fen: int, key: str, payer_account: str) -> None:
        """A deduction cleared from a debtor's bank to the account `to`; the remittance names its key."""
        self.credit(amount_fen, to, payer_account=payer_account, remittance=f"DEDUCTION {key}")

    def credit(self, amount_fen: int, to: str | None, *, twice: bool = False, **details: Any) -> Entry:
        """Money paid in (by a debtor, a third party, a deduction) to the account `to` (None: the master
        account, with no sub-account named). Listed twice under one reference with `twice` (this entry)
        or `Hostile.repeat_entries` (every entry)."""
        entry = self.books.book(amount_fen, to, self.now(), **details)
        if twice or self.hostile.repeat_entries:
            self.books.entries.append(
                dataclasses.replace(entry, seq=len(self.books.entries) + 1, counted=False)
            )
        return entry

    def reverse(self, reference: str) -> Entry:
        """The bank takes back an entry it booked (a reversal, its own entry)."""
        first = next(e for e in self.books.entries if e.reference == reference)
        return self.books.book(
            first.amount_fen, first.account, self.now(), credit=not first.credit, reversal_of=reference
        )

    # --- the API ---

    async def health(self, request: Request, fault: Fault) -> Response:
        return JSONResponse({"status": "ok", "bank": self.code})

    async def open_subaccount(self, request: Request, fault: Fault) -> Response:
        body = await request.json()
        key, case_number = str(body["key"]), str(body["case_no"])
        if not 8 <= len(key) <= 64:
            raise Refusal(400, "bad_key")
        async with self.lock:
            number = self.books.open(key, case_number)
        return JSONResponse({"key": key, "subaccount": number})

    async def list_entries(self, request: Request, fault: Fault) -> Response:
        after = int(request.query_params.get("after", "0"))
        limit = min(int(request.query_params.get("limit", "2000")), 5000)
        wait = min(float(request.query_params.get("wait", "0")), 30.0)  # a long poll: the bank's push
        if after < 0 or limit < 1 or wait < 0:
            raise Refusal(400, "bad_request")
        deadline = time.monotonic() + wait
        listed = self.books.listed(after, limit)
        while not listed and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            listed = self.books.listed(after, limit)
        return _xml(_camt054(self.books.master, listed))

    async def list_balances(self, request: Request, fault: Fault) -> Response:
        newest = len(self.books.entries)
        through = int(request.query_params.get("through", str(newest)))
        offset = int(request.query_params.get("offset", "0"))
        limit = min(int(request.query_params.get("limit", "2000")), 5000)
        if not 0 <= through <= newest or offset < 0 or limit < 1:
            raise Refusal(400, "bad_request")
        accounts = self.books.balances_page(through, offset, limit)
        return _xml(_camt053(through, accounts))

    async def _credit(self, request: Request) -> Response:
        """One credit (`_credited`) (tests, the demo's debtors who pay on their own)."""
        body = await request.json()
        async with self.lock:
            entry = self._credited(body)
        return JSONResponse({"seq": entry.seq, "reference": entry.reference})

    async def _credits(self, request: Request) -> Response:
        """{"credits": [credit, …]} booked in order (benchmarks: a statement of 100,000 lines)."""
        body = await request.json()
        unknown = sorted(
            {c["case_no"] for c in body["credits"] if c.get("case_no")} - set(self.books.of_case)
        )
        if unknown:
            return JSONResponse({"error": "no_subaccount", "case_no": unknown[:10]}, status_code=400)
        async with self.lock:
            entries = [self._credited(item) for item in body["credits"]]
        return JSONResponse({"references": [e.reference for e in entries]})

    def _credited(self, body: dict[str, Any]) -> Entry:
        """A credit as `/_sim/credit` takes it: {"amount_fen", "to" (a sub-account, or null: the master
        account) or "case_no" (the newest sub-account of that case), "payer_account", "payer_name",
        "remittance", "value_date", "twice" (listed twice under one reference)}."""
        value_date = body.get("value_date")
        to = self.books.of_case[str(body["case_no"])] if body.get("case_no") else body.get("to")
        return self.credit(
            int(body["amount_fen"]),
            to,
            twice=bool(body.get("twice")),
            payer_account=body.get("payer_account"),
            payer_name=body.get("payer_name"),
            remittance=str(body.get("remittance", "")),
            value_date=dt.date.fromisoformat(value_date) if value_date else None,
        )

    async def _reverse(self, request: Request) -> Response:
        body = await request.json()
        async with self.lock:
            entry = self.reverse(str(body["reference"]))
        return JSONResponse({"seq": entry.seq, "reference": entry.reference})

    async def _error(self, request: Request) -> Response:
        """A bank error for reconciliation to find: {"kind": "unlisted" | "phantom", "to", "amount_fen"} or
        {"kind": "fen_off", "account"}."""
        body = await request.json()
        async with self.lock:
            kind = body["kind"]
            if kind == "fen_off":
                account = str(body["account"])
                self.books.off[account] = self.books.off.get(account, 0) + 1
                return JSONResponse({"account": account})
            if kind not in ("unlisted", "phantom"):
                return JSONResponse({"error": "unknown_kind"}, status_code=400)
            entry = self.books.book(
                int(body["amount_fen"]),
                body.get("to"),
                self.now(),
                listed=kind == "phantom",
                counted=kind == "unlisted",
            )
        return JSONResponse({"seq": entry.seq, "reference": entry.reference})

    async def _books(self, request: Request) -> Response:
        return JSONResponse(
            {
                "master": self.books.master,
                "subaccounts": len(self.books.cases),
                "entries": len(self.books.entries),
                "balances": self.books.balances(len(self.books.entries)),
            }
        )


def _yuan(fen: int) -> str:
    return format_yuan(fen).replace(",", "")


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    if text is not None:
        element.text = text
    return element


def _account(parent: ET.Element, tag: str, number: str) -> None:
    _sub(_sub(_sub(_sub(parent, tag), "Id"), "Othr"), "Id", number)


def _camt054(master: str, entries: list[Entry]) -> ET.Element:
    root = ET.Element("Document", {"xmlns": CAMT054})
    notification = _sub(_sub(root, "BkToCstmrDbtCdtNtfctn"), "Ntfctn")
    _account(notification, "Acct", master)
    for e in entries:
        ntry = _sub(notification, "Ntry")
        _sub(ntry, "NtryRef", str(e.seq))
        _sub(ntry, "Amt", _yuan(e.amount_fen), Ccy="CNY")
        _sub(ntry, "CdtDbtInd", "CRDT" if e.credit else "DBIT")
        _sub(ntry, "RvslInd", "true" if e.reversal_of else "false")
        _sub(_sub(ntry, "Sts"), "Cd", "BOOK")
        _sub(_sub(ntry, "BookgDt"), "DtTm", e.booked_at.isoformat())
        _sub(_sub(ntry, "ValDt"), "Dt", e.value_date.isoformat())
        _sub(ntry, "AcctSvcrRef", e.reference)
        tx = _sub(_sub(ntry, "NtryDtls"), "TxDtls")
        if e.reversal_of:
            _sub(_sub(tx, "Refs"), "AcctSvcrRef", e.reversal_of)
        parties = _sub(tx, "RltdPties")
        if e.payer_name:
            _sub(_sub(parties, "Dbtr"), "Nm", e.payer_name)
        if e.payer_account:
            _account(parties, "DbtrAcct", e.payer_account)
        if e.account:
            _account(parties, "CdtrAcct", e.account)
        if e.remittance:
            _sub(_sub(tx, "RmtInf"), "Ustrd", e.remittance)
    return root


def _camt053(through: int, accounts: list[tuple[str, int]]) -> ET.Element:
    root = ET.Element("Document", {"xmlns": CAMT053})
    statement = _sub(root, "BkToCstmrStmt")
    _sub(_sub(statement, "GrpHdr"), "AddtlInf", f"through:{through}")
    for number, fen in accounts:
        stmt = _sub(statement, "Stmt")
        _account(stmt, "Acct", number)
        balance = _sub(stmt, "Bal")
        _sub(_sub(_sub(balance, "Tp"), "CdOrPrtry"), "Cd", "CLBD")
        _sub(balance, "Amt", _yuan(abs(fen)), Ccy="CNY")
        _sub(balance, "CdtDbtInd", "CRDT" if fen >= 0 else "DBIT")
    return root


def _xml(root: ET.Element) -> Response:
    return Response(ET.tostring(root, encoding="utf-8", xml_declaration=True), media_type="application/xml")
