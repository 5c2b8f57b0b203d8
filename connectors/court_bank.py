"""The court's bank: the enforcement-money account, one virtual sub-account per case (一案一账号), and its
statement, in ISO 20022 as banks deliver statements.

Wire format (the simulator in `connectors/simulator/court_bank.py` speaks it):

    POST /v1/subaccounts                 {key, case_no} -> {key, subaccount}; the same key, the same number
    GET  /v1/entries?after=N&limit=L     camt.054 (BkToCstmrDbtCdtNtfctn): entries booked after sequence N
    GET  /v1/balances?through=N&offset=K&limit=L
                                         camt.053 (BkToCstmrStmt): each account's closing balance (CLBD)
                                         as of sequence N (the newest if not given), master account first
    GET  /v1/health

An entry (`Ntry`): `NtryRef` the bank's sequence number, `AcctSvcrRef` its reference (a line delivered
twice carries it twice), `Amt`, `CdtDbtInd` (CRDT, DBIT), `RvslInd` (a reversal, whose
`NtryDtls/TxDtls/Refs/AcctSvcrRef` names the entry it undoes), `BookgDt/DtTm`, `ValDt/Dt`, and in
`NtryDtls/TxDtls`: `RltdPties/CdtrAcct` (the sub-account credited; absent or unknown: the master account),
`RltdPties/Dbtr/Nm` and `RltdPties/DbtrAcct` (who paid), `RmtInf/Ustrd` (the remittance text). A
statement's `GrpHdr/AddtlInf` says `through:N`, the sequence its balances stand at.

Replies are parsed with defusedxml (`connectors.http.parse_xml`); anything that is not the format is an
`InvalidReply` naming the field, never its value (a statement holds names and account numbers).
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol, runtime_checkable
from xml.etree.ElementTree import Element

from pydantic import Field, ValidationError

from connectors.adapter import read_fen
from connectors.base import Health, InvalidReply, Message
from connectors.http import RegistryClient, describe, parse_json, parse_xml
from models.values import mask_account

CAMT054 = "urn:iso:std:iso:20022:tech:xsd:camt.054.001.08"
CAMT053 = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"
PAGE = 2_000


class StatementLine(Message):
    """One entry of the court's bank statement. Names, accounts and the remittance text are personal data:
    kept out of repr, masked wherever shown."""

    seq: int = Field(ge=1)
    reference: str = Field(min_length=1, max_length=64)
    booked_at: dt.datetime
    value_date: dt.date
    amount_fen: int = Field(gt=0, le=10**15)
    credit: bool
    subaccount: str | None = Field(None, pattern=r"^[0-9]{8,32}$", repr=False)
    reversal_of: str | None = Field(None, min_length=1, max_length=64)
    counterparty_account: str | None = Field(None, max_length=64, repr=False)
    counterparty_name: str | None = Field(None, max_length=200, repr=False)
    remittance: str = Field("", max_length=400, repr=False)

    def __repr_args__(self):  # type: ignore[no-untyped-def]
        yield from super().__repr_args__()
        yield "subaccount", mask_account(self.subaccount or "")


class Statement(Message):
    lines: tuple[StatementLine, ...]
    last: int = Field(ge=0)  # the sequence to ask after next time


class Balances(Message):
    """Closing balances at the bank as of `through`: the master account's and each sub-account's."""

    through: int = Field(ge=0)
    master: str = Field(repr=False)
    accounts: dict[str, int] = Field(repr=False)


class _Opened(Message):
    key: str
    subaccount: str = Field(pattern=r"^[0-9]{8,32}$")


@runtime_checkable
class CourtBankPort(Protocol):
    """What case money takes: the HTTP adapter is one; tests use the simulator in process."""

    async def open_subaccount(self, key: str, case_number: str) -> str: ...

    async def entries(self, after: int, wait_s: float = 0) -> Statement: ...

    async def balances(self, through: int | None = None) -> Balances: ...

    async def aclose(self) -> None: ...


class CourtBankConnector:
    """The court's bank over HTTP (`RegistryClient`: retries with backoff, rate limit, circuit breaker).
    Every call is safe to repeat: opening a sub-account is keyed, the rest are reads."""

    def __init__(self, client: RegistryClient, page: int = PAGE) -> None:
        self.client, self.code, self.page = client, client.code, page

    async def aclose(self) -> None:
        await self.client.aclose()

    async def health(self) -> Health:
        return await self.client.health("/v1/health")

    async def open_subaccount(self, key: str, case_number: str) -> str:
        """The case's sub-account, opened once per key: asking again (after a lost reply) gives the same."""
        response = await self.client.call(
            "POST",
            "/v1/subaccounts",
            reference=key,
            safe=True,
            json_body={"key": key, "case_no": case_number},
        )
        opened = parse_json(response, _Opened, self.code, key)
        if opened.key != key:
            raise InvalidReply(self.code, "invalid reply: the sub-account answers another key", key)
        return opened.subaccount

    async def entries(self, after: int, wait_s: float = 0) -> Statement:
        """The statement's entries after sequence `after` (a page); with `wait_s`, the bank holds the request
        up to that long until one comes (a long poll: its push, where it offers one)."""
        ref = f"entries-{after}"
        wait = f"&wait={wait_s:g}" if wait_s > 0 else ""
        response = await self.client.call(
            "GET", f"/v1/entries?after={after}&limit={self.page}{wait}", reference=ref, safe=True
        )
        root = parse_xml(response, self.code, ref, f"{{{CAMT054}}}Document")
        notification = _one(root, f"{{{CAMT054}}}BkToCstmrDbtCdtNtfctn/{{{CAMT054}}}Ntfctn", self.code, ref)
        lines = tuple(self._line(e, ref) for e in notification.findall(f"{{{CAMT054}}}Ntry"))
        seqs = [line.seq for line in lines]
        if seqs != sorted(set(seqs)) or (seqs and seqs[0] <= after):
            raise InvalidReply(self.code, "invalid reply: entries out of order or not after the cursor", ref)
        return Statement(lines=lines, last=seqs[-1] if seqs else after)

    async def balances(self, through: int | None = None) -> Balances:
        master, accounts, stood_at, offset = "", dict[str, int](), through, 0
        while True:
            query = f"offset={offset}&limit={self.page}" + (
                "" if stood_at is None else f"&through={stood_at}"
            )
            ref = f"balances-{offset}"
            response = await self.client.call("GET", f"/v1/balances?{query}", reference=ref, safe=True)
            root = parse_xml(response, self.code, ref, f"{{{CAMT053}}}Document")
            page_through, page = self._statements(root, ref)
            if stood_at is not None and page_through != stood_at:
                raise InvalidReply(
                    self.code, "invalid reply: a page of balances stands at another point", ref
                )
            stood_at = page_through
            for number, fen in page:
                if number in accounts:
                    raise InvalidReply(self.code, "invalid reply: one account is listed twice", ref)
                master = master or number
                accounts[number] = fen
            if len(page) < self.page:
                return Balances(through=stood_at, master=master, accounts=accounts)
            offset += len(page)

    # --- reading camt ---

    def _line(self, ntry: Element, ref: str) -> StatementLine:
        ns = f"{{{CAMT054}}}"
        tx = ntry.find(f"{ns}NtryDtls/{ns}TxDtls")
        data = {
            "seq": _int(_text(ntry, f"{ns}NtryRef", self.code, ref), "NtryRef", self.code, ref),
            "reference": _text(ntry, f"{ns}AcctSvcrRef", self.code, ref),
            "booked_at": _text(ntry, f"{ns}BookgDt/{ns}DtTm", self.code, ref),
            "value_date": _text(ntry, f"{ns}ValDt/{ns}Dt", self.code, ref),
            "amount_fen": self._amount(ntry, f"{ns}Amt", ref),
            "credit": _indicator(_text(ntry, f"{ns}CdtDbtInd", self.code, ref), self.code, ref),
        }
        reversal = (ntry.findtext(f"{ns}RvslInd") or "false").strip()
        if reversal not in ("true", "false"):
            raise InvalidReply(self.code, "invalid reply: RvslInd is not true or false", ref)
        if tx is not None:
            data |= {
                "subaccount": tx.findtext(f"{ns}RltdPties/{ns}CdtrAcct/{ns}Id/{ns}Othr/{ns}Id"),
                "counterparty_account": tx.findtext(f"{ns}RltdPties/{ns}DbtrAcct/{ns}Id/{ns}Othr/{ns}Id"),
                "counterparty_name": tx.findtext(f"{ns}RltdPties/{ns}Dbtr/{ns}Nm"),
                "remittance": tx.findtext(f"{ns}RmtInf/{ns}Ustrd") or "",
                "reversal_of": tx.findtext(f"{ns}Refs/{ns}AcctSvcrRef") if reversal == "true" else None,
            }
        if reversal == "true" and not data.get("reversal_of"):
            raise InvalidReply(self.code, "invalid reply: a reversal does not name the entry it undoes", ref)
        try:
            return StatementLine.model_validate(data)
        except ValidationError as exc:
            raise InvalidReply(self.code, "invalid reply: " + describe(exc), ref) from None

    def _statements(self, root: Element, ref: str) -> tuple[int, list[tuple[str, int]]]:
        ns = f"{{{CAMT053}}}"
        info = _text(root, f"{ns}BkToCstmrStmt/{ns}GrpHdr/{ns}AddtlInf", self.code, ref)
        if not info.startswith("through:"):
            raise InvalidReply(self.code, "invalid reply: AddtlInf does not say through:N", ref)
        through = _int(info.removeprefix("through:"), "AddtlInf", self.code, ref)
        found = []
        for stmt in root.findall(f"{ns}BkToCstmrStmt/{ns}Stmt"):
            number = _text(stmt, f"{ns}Acct/{ns}Id/{ns}Othr/{ns}Id", self.code, ref)
            closing = [
                b for b in stmt.findall(f"{ns}Bal") if b.findtext(f"{ns}Tp/{ns}CdOrPrtry/{ns}Cd") == "CLBD"
            ]
            if len(closing) != 1:
                raise InvalidReply(self.code, "invalid reply: a statement needs one closing balance", ref)
            fen = self._amount(closing[0], f"{ns}Amt", ref, allow_zero=True)
            credit = _indicator(_text(closing[0], f"{ns}CdtDbtInd", self.code, ref), self.code, ref)
            found.append((number, fen if credit else -fen))
        return through, found

    def _amount(self, element: Element, path: str, ref: str, *, allow_zero: bool = False) -> int:
        amount = element.find(path)
        if amount is None or amount.get("Ccy") != "CNY":
            raise InvalidReply(
                self.code, f"invalid reply: {path.split('}')[-1]} is missing or not in CNY", ref
            )
        fen = read_fen(self.code, amount.text or "", "Amt", ref)
        if fen == 0 and not allow_zero:
            raise InvalidReply(self.code, "invalid reply: Amt: an entry of 0 yuan", ref)
        return fen


def _one(root: Element, path: str, registry: str, ref: str) -> Element:
    found = root.find(path)
    if found is None:
        raise InvalidReply(registry, f"invalid reply: no {path.split('}')[-1]}", ref)
    return found


def _text(element: Element, path: str, registry: str, ref: str) -> str:
    text = element.findtext(path)
    if text is None or not text.strip():
        raise InvalidReply(registry, f"invalid reply: {path.split('}')[-1]} is missing", ref)
    return text.strip()


def _int(text: str, what: str, registry: str, ref: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise InvalidReply(registry, f"invalid reply: {what} is not a whole number", ref)
    return int(text)


def _indicator(text: str, registry: str, ref: str) -> bool:
    if text not in ("CRDT", "DBIT"):
        raise InvalidReply(registry, "invalid reply: CdtDbtInd is not CRDT or DBIT", ref)
    return text == "CRDT"
