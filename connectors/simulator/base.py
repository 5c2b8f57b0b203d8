"""What every simulated registry shares: credentials, seeded faults, the ledger, and the `/_sim/` test and
control endpoints (ledger dump, faults, clock). Subclasses add their wire format's routes."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connectors.simulator.faults import Fault, FaultPlan, Hostile, request_identity
from connectors.simulator.ledger import Ledger, Outcome
from models.supervision import bureau_today

Handler = Callable[[Request], Awaitable[Response]]
#: Faults that can meet a control request: "later" applies it and answers "accepted, answer pending";
#: the answer is then collected by the status of its key.
CONTROL_FAULTS = frozenset(Fault)
READ_FAULTS = frozenset({Fault.SLOW, Fault.ERROR, Fault.THROTTLE})


class Refusal(Exception):
    """A request the simulator refuses: becomes `status` with the wire format's error body."""

    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status, self.error = status, error


class Quota:
    """A registry's request quota, as real registries enforce one: a bucket of `burst` requests refilled at
    `rate` a second; a request finding it empty is refused with 429 and counted in `refused`."""

    def __init__(self, rate: float, burst: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a quota needs rate > 0 and burst >= 1")
        self.rate, self.burst = rate, burst
        self.tokens, self.refused = burst, 0
        self._at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self._at) * self.rate)
        self._at = now
        if self.tokens < 1:
            self.refused += 1
            return False
        self.tokens -= 1
        return True


class RegistrySimulator:
    kind = "registry"

    def __init__(
        self, code: str, credential: str, *, today: dt.date | None = None, faults: FaultPlan | None = None
    ) -> None:
        self.code = code
        self.credential = credential
        self.faults = faults or FaultPlan()
        self.hostile = Hostile()
        self.ledger = Ledger(code, today or bureau_today())
        self.pending_queries: dict[str, Response] = {}
        self.requests_seen = 0
        self.quota: Quota | None = None
        self.lock = asyncio.Lock()
        self.app = Starlette(
            routes=[
                *self.routes(),
                Route("/_sim/ledger", self._dump),
                Route("/_sim/faults", self._set_faults, methods=["PUT"]),
                Route("/_sim/hostile", self._set_hostile, methods=["PUT"]),
                Route("/_sim/clock", self._advance, methods=["POST"]),
                Route("/_sim/deposits", self._deposit, methods=["POST"]),
            ]
        )

    def routes(self) -> list[Route]:
        raise NotImplementedError

    def error(self, status: int, error: str) -> Response:
        """The wire format's error body; JSON unless a subclass says otherwise."""
        return JSONResponse({"error": error}, status_code=status)

    def reply(self, outcome: Outcome) -> Response:
        """The wire format's answer to a control request."""
        raise NotImplementedError

    def pending_reply(self, key: str) -> Response:
        """The wire format's "accepted, answer pending"."""
        raise NotImplementedError

    def answer(self, outcome: Outcome | None, fault: Fault) -> Response:
        """The answer to a control request; None from the ledger means no such measure in force (404)."""
        if outcome is None:
            raise Refusal(404, "unknown_reference")
        return self.pending_reply(outcome.key) if fault is Fault.LATER else self.reply(outcome)

    def query_answer(self, ref: str, done: Response, accepted: Response, fault: Fault) -> Response:
        """The answer to a query: `done`, or with a "later" fault `accepted`, keeping `done` for `collect`."""
        if self.hostile.never_answers:  # kept as the answer to collect: "later" again, for ever
            self.pending_queries[ref] = accepted
            return accepted
        if fault is Fault.LATER:
            self.pending_queries[ref] = done
            return accepted
        return done

    async def status(self, request: Request, fault: Fault) -> Response:
        """The first answer to an idempotency key (routes name it {key}), or 404 unknown_key."""
        outcome = self.ledger.answer(request.path_params["key"])
        if outcome is None:
            raise Refusal(404, "unknown_key")
        return self.reply(outcome)

    async def measure(self, request: Request, fault: Fault) -> Response:
        """A measure's state now, by its registry reference (routes name it {number})."""
        async with self.lock:
            outcome = self.ledger.current(request.path_params["number"])
        if outcome is None:
            raise Refusal(404, "unknown_reference")
        return self.reply(outcome)

    async def collect(self, request: Request, fault: Fault) -> Response:
        """The kept answer to a query that was accepted earlier (routes name it {ref})."""
        done = self.pending_queries.get(request.path_params["ref"])
        if done is None:
            raise Refusal(404, "unknown_request")
        return Response(done.body, media_type=done.media_type)

    def garbage(self) -> Response:
        return Response(b'{"results": [{"ref": 1, "balance": -5', media_type="application/json")

    def endpoint(
        self, faults: frozenset[Fault], handler: Callable[[Request, Fault], Awaitable[Response]]
    ) -> Handler:
        """Wrap a handler with the credential check, the fault draw and the refusal mapping."""

        async def run(request: Request) -> Response:
            self.requests_seen += 1
            if request.headers.get("authorization") != f"Bearer {self.credential}":
                return self.error(401, "unauthorized")
            if self.quota is not None and not self.quota.take():
                response = self.error(429, "over_quota")
                response.headers["Retry-After"] = "1"
                return response
            fault = Fault.NONE
            if self.faults.any:
                identity = request_identity(request.method, request.url.path, await request.body())
                fault = self.faults.draw(faults, identity)
            if fault is Fault.SLOW:
                await asyncio.sleep(self.faults.slow_s)
            elif fault is Fault.ERROR:
                return self.error(503, "unavailable")
            elif fault is Fault.THROTTLE:
                response = self.error(429, "too_many_requests")
                response.headers["Retry-After"] = f"{self.faults.retry_after_s}"
                return response
            elif fault is Fault.GARBAGE:
                return self.garbage()
            try:
                response = await handler(request, fault)
            except ClientDisconnect:  # the client gave up (a timeout): nobody reads this answer
                return Response(status_code=499)
            except Refusal as refusal:
                return self.error(refusal.status, refusal.error)
            except (ValueError, KeyError, TypeError):
                return self.error(400, "bad_request")
            if fault is Fault.LOST:  # applied, then the answer is lost on its way
                return self.error(502, "bad_gateway")
            return response

        return run

    # --- /_sim/ ---

    async def _dump(self, request: Request) -> Response:
        measures = [
            asdict(m) | {"start": m.start.isoformat(), "end": m.end.isoformat()}
            for m in self.ledger.measures.values()
        ]
        return JSONResponse(
            {
                "code": self.code,
                "today": self.ledger.today.isoformat(),
                "measures": measures,
                "deducted": self.ledger.deducted,
                "requests_seen": self.requests_seen,
                "refused_over_quota": self.quota.refused if self.quota else 0,
            }
        )

    async def _set_faults(self, request: Request) -> Response:
        return await self._configure(request, "faults", FaultPlan)

    async def _set_hostile(self, request: Request) -> Response:
        return await self._configure(request, "hostile", Hostile)

    async def _configure(self, request: Request, name: str, kind: type[FaultPlan | Hostile]) -> Response:
        """Replace the simulator's `faults` or `hostile` with the JSON body's fields (400 if they are bad)."""
        try:
            setattr(self, name, kind(**(await request.json())))
        except (TypeError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({name: repr(getattr(self, name))})

    async def _advance(self, request: Request) -> Response:
        body = await request.json()
        async with self.lock:
            self.ledger.advance(dt.datetime.fromisoformat(body["now"]))
        return JSONResponse({"today": self.ledger.today.isoformat()})

    async def _deposit(self, request: Request) -> Response:
        """A deposit lands now: {"account_no": ..., "amount_fen": ...} (tests and benchmarks)."""
        body = await request.json()
        async with self.lock:
            event = self.ledger.deposit(
                str(body["account_no"]), int(body["amount_fen"]), dt.datetime.now(dt.UTC)
            )
        if event is None:
            return JSONResponse({"error": "unknown_account"}, status_code=404)
        return JSONResponse({"seq": event.seq, "balance_fen": event.balance_fen})
