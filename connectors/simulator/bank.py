"""A bank, simulated: the JSON API of `connectors/bank.py` over the shared ledger."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connectors.simulator.base import CONTROL_FAULTS, READ_FAULTS, Refusal, RegistrySimulator
from connectors.simulator.faults import Fault
from connectors.simulator.ledger import Holding, Outcome, Restriction
from models.rules import AssetKind
from models.values import format_yuan, parse_yuan


def yuan(fen: int) -> str:
    return format_yuan(fen).replace(",", "")


class BankSimulator(RegistrySimulator):
    kind = "bank"

    def routes(self) -> list[Route]:
        return [
            Route("/v1/health", self.endpoint(frozenset(), self.health)),
            Route(
                "/v1/queries", self.endpoint(frozenset(Fault) - {Fault.LOST}, self.query), methods=["POST"]
            ),
            Route("/v1/queries/{ref}", self.endpoint(READ_FAULTS, self.collect)),
            Route("/v1/freezes", self.endpoint(CONTROL_FAULTS, self.freeze), methods=["POST"]),
            Route(
                "/v1/freezes/{number}/renewals", self.endpoint(CONTROL_FAULTS, self.renew), methods=["POST"]
            ),
            Route(
                "/v1/freezes/{number}/releases", self.endpoint(CONTROL_FAULTS, self.release), methods=["POST"]
            ),
            Route("/v1/requests/{key}", self.endpoint(READ_FAULTS, self.status)),
            Route("/v1/freezes/{number}", self.endpoint(READ_FAULTS, self.measure)),
            Route("/v1/balances", self.endpoint(READ_FAULTS, self.balances), methods=["POST"]),
            Route("/v1/deposits", self.endpoint(READ_FAULTS, self.deposits)),
            Route(
                "/v1/deductions", self.endpoint(CONTROL_FAULTS - {Fault.LATER}, self.deduct), methods=["POST"]
            ),
        ]

    def add_account(
        self, owner_id: str, account_no: str, balance_fen: int, restrictions: list[Restriction] | None = None
    ) -> Holding:
        return self.ledger.add(
            Holding(account_no, owner_id, AssetKind.DEPOSIT, balance_fen, restrictions=restrictions or [])
        )

    async def health(self, request: Request, fault: Fault) -> Response:
        return JSONResponse({"status": "ok", "bank": self.code})

    def _account(self, holding: Holding) -> dict[str, Any]:
        assert holding.balance_fen is not None
        return ({"purpose": holding.purpose} if holding.purpose else {}) | {
            "account_no": holding.identifier,
            "balance": yuan(holding.balance_fen),
            "currency": "CNY",
            "restrictions": [
                {
                    "authority": r.authority,
                    "amount": None if r.amount_fen is None else yuan(r.amount_fen),
                    "until": r.until.isoformat(),
                }
                for r in holding.restrictions
            ],
        }

    def _balance(self, holding: Holding) -> dict[str, Any]:
        account = self._account(holding)
        if self.hostile.silent_balances:
            account.pop("purpose", None)
            account.pop("restrictions")
        return account

    async def query(self, request: Request, fault: Fault) -> Response:
        body = await request.json()
        ref = str(body["request_ref"])
        results = [
            {"ref": s["ref"], "accounts": self._accounts(s, self.ledger.holdings_of(s["id_no"]))}
            for s in body["subjects"]
        ]
        done = JSONResponse({"request_ref": ref, "status": "done", "results": results})
        return self.query_answer(ref, done, JSONResponse({"request_ref": ref, "status": "accepted"}), fault)

    def _accounts(self, subject: dict[str, Any], holdings: list[Holding]) -> list[dict[str, Any]]:
        accounts = [self._account(h) for h in holdings]
        if accounts and self.hostile.duplicate_account:
            first = accounts[0]
            accounts.append(first | {"balance": yuan(parse_yuan(first["balance"], "balance") + 100)})
        if accounts and self.hostile.echo_personal:
            accounts[0] = accounts[0] | {"balance": str(subject["id_no"])}
        return accounts

    async def balances(self, request: Request, fault: Fault) -> Response:
        """Balances of known accounts now (the deposit watch polls this)."""
        body = await request.json()
        accounts = [str(a) for a in body["accounts"]]
        if len(accounts) > 1000:
            raise Refusal(413, "too_many_accounts")
        found = [self.ledger.holdings.get(a) for a in accounts]
        return JSONResponse(
            {
                "request_ref": str(body["request_ref"]),
                "accounts": [self._balance(h) for h in found if h is not None],
            }
        )

    async def deposits(self, request: Request, fault: Fault) -> Response:
        """The push feed of deposits: events after `after`, waiting up to `wait` seconds for one (a long
        poll)."""
        after = int(request.query_params.get("after", "0"))
        wait = min(float(request.query_params.get("wait", "0")), 30.0)
        if after < 0:
            raise Refusal(400, "bad_cursor")
        deadline = time.monotonic() + wait
        while True:
            events = self.ledger.deposits_after(after)
            if events or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.02)
        return JSONResponse(
            {
                "events": [
                    {
                        "seq": e.seq,
                        "account_no": e.identifier,
                        "amount": yuan(e.amount_fen),
                        "balance": yuan(e.balance_fen),
                        "at": e.at.isoformat(),
                    }
                    for e in events
                ],
                "last": events[-1].seq if events else after,
            }
        )

    def pending_reply(self, key: str) -> Response:
        return JSONResponse({"key": key, "result": "ACCEPTED"})

    def _control_reply(self, outcome: Outcome) -> Response:
        m = outcome.measure
        if outcome.result == "refused" or m is None:
            return JSONResponse({"key": outcome.key, "result": "REJECTED", "reason": outcome.reason})
        result = {"effective": "FROZEN", "partial": "PARTIAL", "queued": "QUEUED", "released": "RELEASED"}
        reply: dict[str, Any] = {
            "key": outcome.key,
            "result": result[outcome.result],
            "freeze_no": m.number,
            "account_no": self._other_account(m.identifier)
            if self.hostile.names_other_account
            else m.identifier,
            "case_no": self._other_case(m.case_no) if self.hostile.names_other_case else m.case_no,
            "frozen_amount": yuan(m.held_fen or 0),
            "start": m.start.isoformat(),
            "end": m.end.isoformat(),
            "queue_no": m.queue_no,
        }
        if self.hostile.unreadable_amount is not None:
            reply["frozen_amount"] = self.hostile.unreadable_amount
        if outcome.ahead is not None:
            a = outcome.ahead
            reply["ahead"] = {
                "authority": a.authority,
                "amount": None if a.amount_fen is None else yuan(a.amount_fen),
                "until": a.until.isoformat(),
            }
        return JSONResponse(reply)

    @staticmethod
    def _other_account(identifier: str) -> str:
        return identifier[:-1] + str((int(identifier[-1]) + 1) % 10)

    @staticmethod
    def _other_case(case_no: str) -> str:
        return case_no.replace("号", "0号")

    async def freeze(self, request: Request, fault: Fault) -> Response:
        body = await request.json()
        amount = parse_yuan(str(body["amount"]), "amount", allow_zero=False)
        async with self.lock:
            outcome = self.ledger.place(
                str(body["key"]),
                str(body["case_no"]),
                str(body["account_no"]),
                amount * self.hostile.over_freeze,
                int(body.get("term_years", 1)),
            )
            m = None if outcome.measure is None else self.ledger.measures.get(outcome.measure.number)
            if self.hostile.over_freeze > 1 and m is not None and m.held_fen is not None:
                m.requested_fen = max(m.held_fen, amount)  # it believes it was asked what it holds
        return self.answer(outcome, fault)

    async def status(self, request: Request, fault: Fault) -> Response:
        if not self.hostile.shared_reference:
            return await super().status(request, fault)
        key = request.path_params["key"]
        if self.ledger.answer(key) is None:
            raise Refusal(404, "unknown_key")
        today = self.ledger.today.isoformat()
        return JSONResponse(
            {
                "key": key,
                "result": "FROZEN",
                "freeze_no": f"{self.code}-SHARED",
                "frozen_amount": "99999999.00",
                "start": today,
                "end": (self.ledger.today + dt.timedelta(days=365)).isoformat(),
            }
        )

    async def renew(self, request: Request, fault: Fault) -> Response:
        body = await request.json()
        async with self.lock:
            outcome = self.ledger.renew(
                str(body["key"]), request.path_params["number"], int(body.get("term_years", 1))
            )
        return self.answer(outcome, fault)

    async def release(self, request: Request, fault: Fault) -> Response:
        body = await request.json()
        amount = (
            None
            if body.get("amount") is None
            else parse_yuan(str(body["amount"]), "amount", allow_zero=False)
        )
        async with self.lock:
            outcome = self.ledger.release(str(body["key"]), request.path_params["number"], amount)
        return self.answer(outcome, fault)

    def reply(self, outcome: Outcome) -> Response:
        if outcome.deducted_fen is not None:
            return JSONResponse(self._deduct_reply(outcome))
        return self._control_reply(outcome)

    def _deduct_reply(self, outcome: Outcome) -> dict[str, Any]:
        assert outcome.measure is not None
        assert outcome.deducted_fen is not None
        amount = self.hostile.unreadable_amount
        return {
            "key": outcome.key,
            "freeze_no": outcome.measure.number,
            "amount": yuan(outcome.deducted_fen) if amount is None else amount,
            "date": self.ledger.today.isoformat(),
        }

    async def deduct(self, request: Request, fault: Fault) -> Response:
        body = await request.json()
        amount = parse_yuan(str(body["amount"]), "amount", allow_zero=False)
        async with self.lock:
            to = body.get("court_account")
            outcome = self.ledger.deduct(
                str(body["key"]), str(body["freeze_no"]), amount, None if to is None else str(to)
            )
        if outcome is None:
            raise Refusal(409, "cannot_deduct")
        return JSONResponse(self._deduct_reply(outcome))
