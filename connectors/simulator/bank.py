"""A bank, simulated: the JSON API of `connectors/bank.py`, with its own ledger of accounts, freezes,
releases and deductions, idempotency keys, a bearer credential and seeded faults.

Other authorities' freezes come first: a freeze takes what their measures leave of the balance, is partial
when that is less than asked, and is queued (behind the earliest of them) when it is nothing.
Test and control endpoints live under `/_sim/`: the ledger, accounts, faults and the simulated clock.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from dataclasses import asdict, dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connectors.simulator.faults import Fault, FaultPlan
from models.rules import AssetKind, measure_expiry, renewal_expiry
from models.values import InvalidValue, format_yuan, parse_yuan


@dataclass
class Restriction:
    authority: str
    amount_fen: int
    until: dt.date


@dataclass
class Account:
    account_no: str
    owner_id: str
    balance_fen: int
    restrictions: list[Restriction] = field(default_factory=list)


@dataclass
class Freeze:
    freeze_no: str
    key: str
    case_no: str
    account_no: str
    requested_fen: int
    frozen_fen: int
    status: str  # effective | queued | released
    start: dt.date
    end: dt.date
    queue_no: int | None = None


@dataclass
class BankLedger:
    accounts: dict[str, Account] = field(default_factory=dict)
    freezes: dict[str, Freeze] = field(default_factory=dict)
    replies: dict[str, dict[str, Any]] = field(default_factory=dict)  # idempotency key -> first answer
    deducted: list[dict[str, Any]] = field(default_factory=list)
    pending_queries: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests_seen: int = 0

    def by_owner(self, owner_id: str) -> list[Account]:
        return [a for a in self.accounts.values() if a.owner_id == owner_id]

    def ours_on(self, account_no: str) -> int:
        return sum(
            f.frozen_fen
            for f in self.freezes.values()
            if f.account_no == account_no and f.status == "effective"
        )


def _yuan(fen: int) -> str:
    return format_yuan(fen).replace(",", "")


class BankSimulator:
    def __init__(
        self, code: str, credential: str, faults: FaultPlan | None = None, today: dt.date | None = None
    ) -> None:
        self.code = code
        self.credential = credential
        self.faults = faults or FaultPlan()
        self.today = today or dt.date.today()
        self.ledger = BankLedger()
        self._numbers = itertools.count(1)
        self._lock = asyncio.Lock()
        self.app = Starlette(
            routes=[
                Route("/v1/health", self.health),
                Route("/v1/queries", self.query, methods=["POST"]),
                Route("/v1/queries/{request_ref}", self.collect),
                Route("/v1/freezes", self.freeze, methods=["POST"]),
                Route("/v1/freezes/{freeze_no}/renewals", self.renew, methods=["POST"]),
                Route("/v1/freezes/{freeze_no}/releases", self.release, methods=["POST"]),
                Route("/v1/requests/{key}", self.status),
                Route("/v1/deductions", self.deduct, methods=["POST"]),
                Route("/_sim/ledger", self.dump),
                Route("/_sim/faults", self.set_faults, methods=["PUT"]),
            ]
        )

    def add_account(
        self, owner_id: str, account_no: str, balance_fen: int, restrictions: list[Restriction] | None = None
    ) -> Account:
        account = Account(account_no, owner_id, balance_fen, restrictions or [])
        self.ledger.accounts[account_no] = account
        return account

    # --- plumbing ---

    async def _guard(self, request: Request, allowed: frozenset[Fault]) -> tuple[Fault, Response | None]:
        self.ledger.requests_seen += 1
        if request.headers.get("authorization") != f"Bearer {self.credential}":
            return Fault.NONE, JSONResponse({"error": "unauthorized"}, status_code=401)
        fault = self.faults.draw(allowed)
        if fault is Fault.SLOW:
            await asyncio.sleep(self.faults.slow_s)
        elif fault is Fault.ERROR:
            return fault, JSONResponse({"error": "unavailable"}, status_code=503)
        elif fault is Fault.THROTTLE:
            headers = {"Retry-After": f"{self.faults.retry_after_s}"}
            return fault, JSONResponse({"error": "too_many_requests"}, status_code=429, headers=headers)
        elif fault is Fault.GARBAGE:
            return fault, Response(b'{"results": [{"ref": 1, "balance": -5', media_type="application/json")
        return fault, None

    @staticmethod
    async def _body(request: Request) -> dict[str, Any] | Response:
        try:
            body = await request.json()
        except ClientDisconnect:  # the client gave up (a timeout): nobody reads this answer
            return Response(status_code=499)
        except ValueError:
            return JSONResponse({"error": "bad_json"}, status_code=400)
        return body if isinstance(body, dict) else JSONResponse({"error": "bad_json"}, status_code=400)

    def _answer(self, key: str, reply: dict[str, Any], fault: Fault) -> Response:
        self.ledger.replies.setdefault(key, reply)
        if fault is Fault.LOST:
            return JSONResponse({"error": "bad_gateway"}, status_code=502)
        return JSONResponse(reply)

    # --- API ---

    async def health(self, request: Request) -> Response:
        _, refused = await self._guard(request, frozenset())
        return refused or JSONResponse({"status": "ok", "bank": self.code})

    async def query(self, request: Request) -> Response:
        fault, refused = await self._guard(request, frozenset(Fault) - {Fault.LOST})
        if refused:
            return refused
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        results = [
            {
                "ref": s["ref"],
                "accounts": [
                    {
                        "account_no": a.account_no,
                        "balance": _yuan(a.balance_fen),
                        "currency": "CNY",
                        "restrictions": [
                            {
                                "authority": r.authority,
                                "amount": _yuan(r.amount_fen),
                                "until": r.until.isoformat(),
                            }
                            for r in a.restrictions
                        ],
                    }
                    for a in self.ledger.by_owner(s["id_no"])
                ],
            }
            for s in body.get("subjects", [])
        ]
        reply = {"request_ref": body.get("request_ref"), "status": "done", "results": results}
        if fault is Fault.LATER:
            self.ledger.pending_queries[str(body.get("request_ref"))] = reply
            refs = [{"ref": s["ref"]} for s in body.get("subjects", [])]
            return JSONResponse(
                {"request_ref": body.get("request_ref"), "status": "accepted", "results": refs}
            )
        return JSONResponse(reply)

    async def collect(self, request: Request) -> Response:
        _, refused = await self._guard(request, frozenset({Fault.ERROR, Fault.THROTTLE, Fault.SLOW}))
        if refused:
            return refused
        reply = self.ledger.pending_queries.get(request.path_params["request_ref"])
        return JSONResponse(reply) if reply else JSONResponse({"error": "unknown_request"}, status_code=404)

    async def freeze(self, request: Request) -> Response:
        fault, refused = await self._guard(request, frozenset(Fault) - {Fault.LATER})
        if refused:
            return refused
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        key = str(body.get("key", ""))
        async with self._lock:
            if key in self.ledger.replies:
                return self._answer(key, self.ledger.replies[key], fault)
            account = self.ledger.accounts.get(str(body.get("account_no")))
            try:
                amount = parse_yuan(str(body.get("amount")), "amount", allow_zero=False)
            except InvalidValue:
                return JSONResponse({"error": "bad_amount"}, status_code=400)
            if account is None:
                return self._answer(
                    key, {"key": key, "result": "REJECTED", "reason": "no_such_account"}, fault
                )
            years = int(body.get("term_years", 1))
            others = sum(r.amount_fen for r in account.restrictions if r.until >= self.today)
            free = max(account.balance_fen - others - self.ledger.ours_on(account.account_no), 0)
            number = f"{self.code}-F{next(self._numbers):07d}"
            end = measure_expiry(AssetKind.DEPOSIT, self.today, years)
            if free == 0 and account.restrictions:
                ahead = min(account.restrictions, key=lambda r: r.until)
                queued = sum(
                    1
                    for f in self.ledger.freezes.values()
                    if f.account_no == account.account_no and f.status == "queued"
                )
                freeze = Freeze(
                    number,
                    key,
                    str(body.get("case_no")),
                    account.account_no,
                    amount,
                    0,
                    "queued",
                    self.today,
                    end,
                    queue_no=len(account.restrictions) + queued + 1,
                )
                reply = {
                    "key": key,
                    "result": "QUEUED",
                    "freeze_no": number,
                    "frozen_amount": "0.00",
                    "start": self.today.isoformat(),
                    "end": end.isoformat(),
                    "queue_no": freeze.queue_no,
                    "ahead": {
                        "authority": ahead.authority,
                        "amount": _yuan(ahead.amount_fen),
                        "until": ahead.until.isoformat(),
                    },
                }
            else:
                frozen = min(amount, free)
                freeze = Freeze(
                    number,
                    key,
                    str(body.get("case_no")),
                    account.account_no,
                    amount,
                    frozen,
                    "effective",
                    self.today,
                    end,
                )
                reply = {
                    "key": key,
                    "result": "FROZEN" if frozen == amount else "PARTIAL",
                    "freeze_no": number,
                    "frozen_amount": _yuan(frozen),
                    "start": self.today.isoformat(),
                    "end": end.isoformat(),
                }
            self.ledger.freezes[number] = freeze
            return self._answer(key, reply, fault)

    async def renew(self, request: Request) -> Response:
        return await self._change(request, "renew")

    async def release(self, request: Request) -> Response:
        return await self._change(request, "release")

    async def _change(self, request: Request, action: str) -> Response:
        fault, refused = await self._guard(request, frozenset(Fault) - {Fault.LATER})
        if refused:
            return refused
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        key = str(body.get("key", ""))
        async with self._lock:
            if key in self.ledger.replies:
                return self._answer(key, self.ledger.replies[key], fault)
            freeze = self.ledger.freezes.get(request.path_params["freeze_no"])
            if freeze is None or freeze.status == "released":
                return JSONResponse({"error": "unknown_reference"}, status_code=404)
            if action == "renew":
                if freeze.end < self.today:
                    return JSONResponse({"error": "lapsed"}, status_code=409)
                freeze.end = renewal_expiry(AssetKind.DEPOSIT, freeze.end, int(body.get("term_years", 1)))
            else:
                cut = body.get("amount")
                cut_fen = (
                    freeze.frozen_fen if cut is None else parse_yuan(str(cut), "amount", allow_zero=False)
                )
                if cut_fen >= freeze.frozen_fen:
                    freeze.frozen_fen, freeze.status = 0, "released"
                else:
                    freeze.frozen_fen -= cut_fen
            result = {"released": "RELEASED", "queued": "QUEUED"}.get(freeze.status, "FROZEN")
            reply = {
                "key": key,
                "result": result,
                "freeze_no": freeze.freeze_no,
                "frozen_amount": _yuan(freeze.frozen_fen),
                "start": freeze.start.isoformat(),
                "end": freeze.end.isoformat(),
                "queue_no": freeze.queue_no,
            }
            return self._answer(key, reply, fault)

    async def status(self, request: Request) -> Response:
        _, refused = await self._guard(request, frozenset({Fault.ERROR, Fault.THROTTLE}))
        if refused:
            return refused
        reply = self.ledger.replies.get(request.path_params["key"])
        return JSONResponse(reply) if reply else JSONResponse({"error": "unknown_key"}, status_code=404)

    async def deduct(self, request: Request) -> Response:
        fault, refused = await self._guard(request, frozenset({Fault.ERROR, Fault.THROTTLE, Fault.LOST}))
        if refused:
            return refused
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        key = str(body.get("key", ""))
        async with self._lock:
            if key in self.ledger.replies:
                return self._answer(key, self.ledger.replies[key], fault)
            freeze = self.ledger.freezes.get(str(body.get("freeze_no")))
            amount = parse_yuan(str(body.get("amount")), "amount", allow_zero=False)
            if freeze is None or freeze.status != "effective" or amount > freeze.frozen_fen:
                return JSONResponse({"error": "cannot_deduct"}, status_code=409)
            freeze.frozen_fen -= amount
            self.ledger.accounts[freeze.account_no].balance_fen -= amount
            self.ledger.deducted.append({"freeze_no": freeze.freeze_no, "amount_fen": amount})
            reply = {
                "key": key,
                "freeze_no": freeze.freeze_no,
                "amount": _yuan(amount),
                "date": self.today.isoformat(),
            }
            return self._answer(key, reply, fault)

    # --- test and control endpoints ---

    async def dump(self, request: Request) -> Response:
        freezes = [
            asdict(f) | {"start": f.start.isoformat(), "end": f.end.isoformat()}
            for f in self.ledger.freezes.values()
        ]
        return JSONResponse(
            {"freezes": freezes, "deducted": self.ledger.deducted, "requests_seen": self.ledger.requests_seen}
        )

    async def set_faults(self, request: Request) -> Response:
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        try:
            self.faults = FaultPlan(**body)
        except (TypeError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"faults": {k: v for k, v in body.items()}})
