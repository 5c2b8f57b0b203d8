"""A vehicle registry, simulated: the JSON API of `connectors/vehicle.py` over the shared ledger."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connectors.simulator.base import CONTROL_FAULTS, READ_FAULTS, RegistrySimulator
from connectors.simulator.faults import Fault
from connectors.simulator.ledger import Holding, Outcome, Restriction
from models.rules import AssetKind

_RESULTS = {"effective": "CF", "queued": "LH", "refused": "JJ", "released": "JC"}


class VehicleSimulator(RegistrySimulator):
    kind = "vehicle"

    def routes(self) -> list[Route]:
        post, control, read = ["POST"], CONTROL_FAULTS, READ_FAULTS
        return [
            Route("/api/health", self.endpoint(frozenset(), self.health)),
            Route(
                "/api/vehicle/search",
                self.endpoint(frozenset(Fault) - {Fault.LOST}, self.search),
                methods=post,
            ),
            Route("/api/vehicle/search/{ref}", self.endpoint(read, self.collect)),
            Route("/api/vehicle/seize", self.endpoint(control, self.seize), methods=post),
            Route("/api/vehicle/seize/{number}/renew", self.endpoint(control, self.renew), methods=post),
            Route("/api/vehicle/seize/{number}/release", self.endpoint(control, self.release), methods=post),
            Route("/api/vehicle/request/{key}", self.endpoint(read, self.status)),
            Route("/api/vehicle/seize/{number}", self.endpoint(read, self.measure)),
        ]

    def add_vehicle(
        self,
        owner_id: str,
        plate: str,
        plate_type: str = "02",
        make: str = "大众牌",
        restrictions: list[Restriction] | None = None,
    ) -> Holding:
        return self.ledger.add(
            Holding(
                plate,
                owner_id,
                AssetKind.VEHICLE,
                description=f"{plate_type}|{make}",
                restrictions=restrictions or [],
            )
        )

    async def health(self, request: Request, fault: Fault) -> Response:
        return JSONResponse({"code": "0000"})

    def _vehicle(self, holding: Holding) -> dict[str, Any]:
        plate_type, _, make = holding.description.partition("|")
        return {
            "hphm": holding.identifier,
            "hpzl": plate_type,
            "clpp": make,
            "cfxx": [{"jg": r.authority, "jzrq": r.until.isoformat()} for r in holding.restrictions],
        }

    async def search(self, request: Request, fault: Fault) -> Response:
        body = await request.json()
        ref = str(body["reqNo"])
        data = [
            {"seq": p["seq"], "vehicles": [self._vehicle(h) for h in self.ledger.holdings_of(p["zjhm"])]}
            for p in body["persons"]
        ]
        done = JSONResponse({"reqNo": ref, "code": "0000", "data": data})
        return self.query_answer(ref, done, JSONResponse({"reqNo": ref, "code": "0001", "data": []}), fault)

    def pending_reply(self, key: str) -> Response:
        return JSONResponse({"lsh": key, "jg": "SL"})

    def reply(self, outcome: Outcome) -> Response:
        reply: dict[str, Any] = {"lsh": outcome.key, "jg": _RESULTS[outcome.result], "yy": outcome.reason}
        m = outcome.measure
        if m is not None:
            reply |= {
                "cfh": m.number,
                "ksrq": m.start.isoformat(),
                "jsrq": m.end.isoformat(),
                "lhxh": m.queue_no,
            }
        if outcome.ahead is not None:
            reply["qx"] = {"jg": outcome.ahead.authority, "jzrq": outcome.ahead.until.isoformat()}
        return JSONResponse(reply)

    async def seize(self, request: Request, fault: Fault) -> Response:
        body = await request.json()
        async with self.lock:
            outcome = self.ledger.place(
                str(body["lsh"]), str(body["ah"]), str(body["hphm"]), None, int(body["nx"])
            )
        return self.answer(outcome, fault)

    async def renew(self, request: Request, fault: Fault) -> Response:
        body = await request.json()
        async with self.lock:
            outcome = self.ledger.renew(str(body["lsh"]), request.path_params["number"], int(body["nx"]))
        return self.answer(outcome, fault)

    async def release(self, request: Request, fault: Fault) -> Response:
        body = await request.json()
        async with self.lock:
            outcome = self.ledger.release(str(body["lsh"]), request.path_params["number"], None)
        return self.answer(outcome, fault)
