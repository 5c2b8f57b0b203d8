"""The bank adapter: a JSON API for queries, freezes, renewals, releases, status by key and deductions.

Wire format (what `connectors/simulator/bank.py` serves):
    POST /v1/queries                      {request_ref, subjects: [{ref, type: P|O, id_no, name}]}
    GET  /v1/queries/{request_ref}        the answer to a query that was "accepted"
    POST /v1/freezes                      {key, case_no, ref, account_no, amount, term_years}
    POST /v1/freezes/{freeze_no}/renewals {key, term_years}
    POST /v1/freezes/{freeze_no}/releases {key, amount | null}
    GET  /v1/requests/{key}               the answer to any control request, or 404 unknown_key
    GET  /v1/freezes/{freeze_no}          a freeze's state now
    POST /v1/balances                     {request_ref, accounts: [account_no]}: balances now
    GET  /v1/deposits?after=N&wait=S      the push feed: deposits after N, long-polled up to S seconds
    POST /v1/deductions                   {key, freeze_no, amount, court_account}
    GET  /v1/health
Amounts travel as yuan strings ("1234.56") and leave this module as integer fen, validated. An account's
`purpose` and `restrictions` left out of an answer say nothing (the case book keeps what it knows); `null`
and `[]` say "none".
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field

from connectors.adapter import HttpConnector, unreadable, yuan
from connectors.base import (
    AssetReport,
    ControlOutcome,
    ControlReply,
    ControlRequest,
    DeductReply,
    DeductRequest,
    DepositEvent,
    DepositFeed,
    InvalidReply,
    MeasureKind,
    OtherMeasure,
    QueryReply,
    QueryRequest,
    RegistryKind,
    RejectedError,
    ReleaseRequest,
    RenewRequest,
    SubjectResult,
    SubjectStatus,
    UnknownOutcome,
)
from connectors.http import parse_json
from models.rules import AssetKind
from models.values import DebtorKind

# --- the wire -----------------------------------------------------------------------------------------


class Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class WireRestriction(Wire):
    authority: str = Field(min_length=1, max_length=200)
    amount: str | None = None
    until: dt.date | None = Field(None, strict=False)


class WireAccount(Wire):
    account_no: str = Field(min_length=4, max_length=40, pattern=r"^[0-9]+$")
    balance: str
    currency: Literal["CNY"] = "CNY"
    restrictions: list[WireRestriction] = []
    purpose: str | None = Field(None, pattern=r"^[a-z][a-z0-9_]{0,31}$")  # the account's type, a code


class WireResult(Wire):
    ref: str
    accounts: list[WireAccount] = []


class WireQueryReply(Wire):
    request_ref: str
    status: Literal["done", "accepted"]
    results: list[WireResult] = []


class WireControlReply(Wire):
    key: str
    result: Literal["FROZEN", "PARTIAL", "QUEUED", "ACCEPTED", "REJECTED", "RELEASED"]
    freeze_no: str | None = None
    frozen_amount: str | None = None
    start: dt.date | None = Field(None, strict=False)
    end: dt.date | None = Field(None, strict=False)
    queue_no: int | None = Field(None, ge=1)
    ahead: WireRestriction | None = None
    reason: str | None = Field(None, max_length=64)
    account_no: str | None = Field(None, min_length=4, max_length=40, pattern=r"^[0-9]+$")
    case_no: str | None = Field(None, max_length=64)


class WireBalances(Wire):
    request_ref: str
    accounts: list[WireAccount] = []


class WireDeposit(Wire):
    seq: int = Field(ge=1)
    account_no: str = Field(min_length=4, max_length=40, pattern=r"^[0-9]+$")
    amount: str
    balance: str
    at: dt.datetime = Field(strict=False)


class WireDeposits(Wire):
    events: list[WireDeposit] = Field(max_length=1000)
    last: int = Field(ge=0)


class WireDeductReply(Wire):
    key: str
    freeze_no: str
    amount: str
    date: dt.date = Field(strict=False)


_OUTCOMES = {
    "FROZEN": ControlOutcome.EFFECTIVE,
    "PARTIAL": ControlOutcome.PARTIAL,
    "QUEUED": ControlOutcome.QUEUED,
    "ACCEPTED": ControlOutcome.PENDING,
    "REJECTED": ControlOutcome.REFUSED,
    "RELEASED": ControlOutcome.RELEASED,
}


class BankConnector(HttpConnector):
    """Speaks one bank's JSON API through a `RegistryClient`."""

    kind = RegistryKind.BANK
    health_path = "/v1/health"

    # --- queries ---

    async def query(self, request: QueryRequest) -> QueryReply:
        body = {
            "request_ref": request.request_ref,
            "subjects": [
                {
                    "ref": s.ref,
                    "type": "P" if s.kind is DebtorKind.PERSON else "O",
                    "id_no": s.id_number,
                    "name": s.name,
                }
                for s in request.subjects
            ],
        }
        response = await self.client.call(
            "POST", "/v1/queries", reference=request.request_ref, safe=True, json_body=body
        )
        return self._query_reply(response, request.request_ref, {s.ref for s in request.subjects})

    async def collect(self, request_ref: str) -> QueryReply:
        response = await self.client.call(
            "GET", f"/v1/queries/{request_ref}", reference=request_ref, safe=True
        )
        return self._query_reply(response, request_ref, None)

    def _query_reply(self, response: httpx.Response, request_ref: str, asked: set[str] | None) -> QueryReply:
        wire = parse_json(response, WireQueryReply, self.code, request_ref)
        if wire.request_ref != request_ref:
            raise InvalidReply(self.code, "reply names another request", request_ref)
        if wire.status == "accepted":
            refs = asked if asked is not None else {r.ref for r in wire.results}
            pending = tuple(SubjectResult(subject_ref=r, status=SubjectStatus.PENDING) for r in sorted(refs))
            return QueryReply(request_ref=request_ref, results=pending)
        seen = [r.ref for r in wire.results]
        if len(seen) != len(set(seen)):
            raise InvalidReply(self.code, "reply lists a subject twice", request_ref)
        if asked is not None and set(seen) != asked:
            raise InvalidReply(self.code, "reply does not answer exactly the subjects asked", request_ref)
        results = []
        for result in wire.results:
            assets = tuple(self._asset(a, request_ref) for a in result.accounts)
            status = SubjectStatus.FOUND if assets else SubjectStatus.NONE
            results.append(SubjectResult(subject_ref=result.ref, status=status, assets=assets))
        return self.checked_query(QueryReply(request_ref=request_ref, results=tuple(results)))

    def _asset(self, account: WireAccount, reference: str) -> AssetReport:
        """An account as the bank reports it. What the bank leaves out (`purpose`, `restrictions`) is left
        out of the report too, so that it keeps what the case book knows; `null` or `[]` says "none"."""
        said: dict[str, Any] = {}
        if "purpose" in account.model_fields_set:
            said["purpose"] = account.purpose
        if "restrictions" in account.model_fields_set:
            said["other_measures"] = tuple(self._other(r, reference) for r in account.restrictions)
        return AssetReport(
            asset_kind=AssetKind.DEPOSIT,
            identifier=account.account_no,
            balance_fen=self.fen(account.balance, "balance", reference),
            **said,
        )

    def _other(self, wire: WireRestriction, reference: str) -> OtherMeasure:
        amount = None if wire.amount is None else self.fen(wire.amount, "restriction amount", reference)
        return OtherMeasure(authority=wire.authority, amount_fen=amount, expires_on=wire.until)

    # --- control ---

    async def control(self, request: ControlRequest) -> ControlReply:
        if request.kind is not MeasureKind.FREEZE or request.amount_fen is None:
            raise RejectedError(
                self.code, "a bank takes freezes with an amount only", request.idempotency_key
            )
        body = {
            "key": request.idempotency_key,
            "case_no": request.case_number,
            "ref": request.subject_ref,
            "account_no": request.asset_identifier,
            "amount": yuan(request.amount_fen),
            "term_years": request.years,
        }
        return await self.send_control("/v1/freezes", request.idempotency_key, json_body=body)

    async def renew(self, request: RenewRequest) -> ControlReply:
        path = f"/v1/freezes/{request.registry_reference}/renewals"
        body = {"key": request.idempotency_key, "term_years": request.years}
        return await self.send_control(path, request.idempotency_key, json_body=body)

    async def release(self, request: ReleaseRequest) -> ControlReply:
        path = f"/v1/freezes/{request.registry_reference}/releases"
        amount = None if request.amount_fen is None else yuan(request.amount_fen)
        body = {"key": request.idempotency_key, "amount": amount}
        return await self.send_control(path, request.idempotency_key, json_body=body)

    def status_path(self, idempotency_key: str) -> str:
        return f"/v1/requests/{idempotency_key}"

    def measure_path(self, registry_reference: str) -> str:
        return f"/v1/freezes/{registry_reference}"

    # --- the deposit watch ---

    async def balances(self, request_ref: str, identifiers: list[str]) -> tuple[AssetReport, ...]:
        """Balances of accounts found earlier; an account the bank no longer knows is left out."""
        body = {"request_ref": request_ref, "accounts": identifiers}
        response = await self.client.call(
            "POST", "/v1/balances", reference=request_ref, safe=True, json_body=body
        )
        wire = parse_json(response, WireBalances, self.code, request_ref)
        if wire.request_ref != request_ref:
            raise InvalidReply(self.code, "reply names another request", request_ref)
        asked = set(identifiers)
        if any(a.account_no not in asked for a in wire.accounts):
            raise InvalidReply(self.code, "reply names an account that was not asked about", request_ref)
        return self.listed_once([self._asset(a, request_ref) for a in wire.accounts], request_ref)

    async def deposits(self, after: int, wait_s: float) -> DepositFeed:
        """Deposits after the cursor `after`, waiting up to `wait_s` seconds for the first (long poll)."""
        reference = f"deposits-after-{after}"
        response = await self.client.call(
            "GET", f"/v1/deposits?after={after}&wait={wait_s:g}", reference=reference, safe=True
        )
        wire = parse_json(response, WireDeposits, self.code, reference)
        seqs = [e.seq for e in wire.events]
        if seqs != sorted(set(seqs)) or any(q <= after for q in seqs) or (seqs and wire.last != seqs[-1]):
            raise InvalidReply(self.code, "invalid reply: deposit events out of order", reference)
        events = tuple(
            DepositEvent(
                seq=e.seq,
                identifier=e.account_no,
                amount_fen=self.fen(e.amount, "amount", reference),
                balance_fen=self.fen(e.balance, "balance", reference),
                at=e.at,
            )
            for e in wire.events
        )
        return DepositFeed(events=events, last=max(wire.last, after))

    def control_reply(self, response: httpx.Response, key: str) -> ControlReply:
        wire = parse_json(response, WireControlReply, self.code, key)
        amount = None if wire.frozen_amount is None else self.fen(wire.frozen_amount, "frozen_amount", key)
        reply = ControlReply(
            idempotency_key=key,
            outcome=_OUTCOMES[wire.result],
            registry_reference=wire.freeze_no,
            amount_fen=amount,
            started_on=wire.start,
            expires_on=wire.end,
            queue_position=wire.queue_no,
            ahead=None if wire.ahead is None else self._other(wire.ahead, key),
            reason=wire.reason,
            account=wire.account_no,
            case_number=wire.case_no,
        )
        return self.checked(reply, wire.key)

    # --- deduction ---

    async def deduct(self, request: DeductRequest) -> DeductReply:
        """Move frozen money to the court's account. An answer lost is asked for by the key's status; an
        answer that cannot be read (or says more moved than asked) is an unknown outcome (`UnreadableAnswer`):
        the money may have moved, so the deduction is settled by its key, never taken as refused."""
        key = request.idempotency_key
        body = {
            "key": key,
            "freeze_no": request.registry_reference,
            "amount": yuan(request.amount_fen),
            "court_account": request.court_account,
        }
        try:
            try:
                response = await self.client.call(
                    "POST", "/v1/deductions", reference=key, safe=False, json_body=body
                )
            except UnknownOutcome:  # the key's status holds the deduction's first answer
                response = await self.client.call("GET", self.status_path(key), reference=key, safe=True)
            wire = parse_json(response, WireDeductReply, self.code, key)
            amount = self.fen(wire.amount, "amount", key)
            if amount > request.amount_fen:
                raise InvalidReply(self.code, "invalid reply: more was deducted than asked", key)
            if wire.key != key:
                raise InvalidReply(self.code, "reply names another request", key)
        except InvalidReply as exc:
            raise unreadable(exc) from None
        return DeductReply(
            idempotency_key=key,
            registry_reference=wire.freeze_no,
            amount_fen=amount,
            transferred_on=wire.date,
        )
