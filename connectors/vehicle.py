"""The vehicle registry adapter (车管所): JSON with the registry's own field names and codes.

Wire format (what `connectors/simulator/vehicle.py` serves; names as the registry writes them):
    POST /api/vehicle/search            {reqNo, persons: [{seq, zjlx: A (ID) | B (credit code), zjhm, xm}]}
    GET  /api/vehicle/search/{reqNo}    the answer to a search that was accepted (code 0001)
    POST /api/vehicle/seize             {lsh (idempotency key), ah (case no.), seq, hphm (plate), nx (years)}
    POST /api/vehicle/seize/{cfh}/renew     {lsh, nx}
    POST /api/vehicle/seize/{cfh}/release   {lsh}
    GET  /api/vehicle/request/{lsh}     a control request's first answer, or 404 {"error": "unknown_key"}
    GET  /api/health

    search reply: {reqNo, code: 0000 (done) | 0001 (accepted), data: [{seq, vehicles: [
        {hphm, hpzl (plate type), clpp (make), cfxx: [{jg (authority), jzrq (until)}]}]}]}
    seize reply:  {lsh, jg: CF (seized) | LH (queued) | SL (accepted) | JJ (refused) | JC (released),
                   cfh (reference), ksrq (start), jsrq (end), lhxh (queue place), qx: {jg, jzrq}, yy (reason)}
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field

from connectors.adapter import HttpConnector
from connectors.base import (
    AssetReport,
    ControlOutcome,
    ControlReply,
    ControlRequest,
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
)
from connectors.http import parse_json
from models.rules import AssetKind
from models.values import PROVINCE_WORDS, DebtorKind

#: A plate: province word, a letter, then 5 (or 6, new-energy) letters and digits.
PLATE = re.compile(r"^[" + PROVINCE_WORDS + r"][A-Z][A-Z0-9]{5,6}$")
PLATE_TYPES = {
    "01": "大型汽车",
    "02": "小型汽车",
    "07": "普通摩托车",
    "15": "挂车",
    "51": "大型新能源汽车",
    "52": "小型新能源汽车",
}
_RESULTS = {
    "CF": ControlOutcome.EFFECTIVE,
    "LH": ControlOutcome.QUEUED,
    "SL": ControlOutcome.PENDING,
    "JJ": ControlOutcome.REFUSED,
    "JC": ControlOutcome.RELEASED,
}


class Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class WireSeizure(Wire):
    jg: str = Field(min_length=1, max_length=200)
    jzrq: dt.date | None = Field(None, strict=False)


class WireVehicle(Wire):
    hphm: str = Field(pattern=PLATE.pattern)
    hpzl: str
    clpp: str = Field("", max_length=100)
    cfxx: list[WireSeizure] = []


class WirePerson(Wire):
    seq: str
    vehicles: list[WireVehicle] = []


class WireSearch(Wire):
    reqNo: str
    code: Literal["0000", "0001"]
    data: list[WirePerson] = []


class WireSeize(Wire):
    lsh: str
    jg: Literal["CF", "LH", "SL", "JJ", "JC"]
    cfh: str | None = None
    ksrq: dt.date | None = Field(None, strict=False)
    jsrq: dt.date | None = Field(None, strict=False)
    lhxh: int | None = Field(None, ge=1)
    qx: WireSeizure | None = None
    yy: str | None = Field(None, max_length=64)


class VehicleConnector(HttpConnector):
    kind = RegistryKind.VEHICLE
    health_path = "/api/health"

    def status_path(self, idempotency_key: str) -> str:
        return f"/api/vehicle/request/{idempotency_key}"

    def measure_path(self, registry_reference: str) -> str:
        return f"/api/vehicle/seize/{registry_reference}"

    async def query(self, request: QueryRequest) -> QueryReply:
        body = {
            "reqNo": request.request_ref,
            "persons": [
                {
                    "seq": s.ref,
                    "zjlx": "A" if s.kind is DebtorKind.PERSON else "B",
                    "zjhm": s.id_number,
                    "xm": s.name,
                }
                for s in request.subjects
            ],
        }
        response = await self.client.call(
            "POST", "/api/vehicle/search", reference=request.request_ref, safe=True, json_body=body
        )
        return self._reply(response, request.request_ref, {s.ref for s in request.subjects})

    async def collect(self, request_ref: str) -> QueryReply:
        path = f"/api/vehicle/search/{request_ref}"
        response = await self.client.call("GET", path, reference=request_ref, safe=True)
        return self._reply(response, request_ref, None)

    def _reply(self, response: httpx.Response, ref: str, asked: set[str] | None) -> QueryReply:
        wire = parse_json(response, WireSearch, self.code, ref)
        if wire.reqNo != ref:
            raise InvalidReply(self.code, "reply names another request", ref)
        seqs = [p.seq for p in wire.data]
        if wire.code == "0001":
            pending = sorted(asked) if asked is not None else seqs
            return QueryReply(
                request_ref=ref,
                results=tuple(SubjectResult(subject_ref=s, status=SubjectStatus.PENDING) for s in pending),
            )
        if len(seqs) != len(set(seqs)) or (asked is not None and set(seqs) != asked):
            raise InvalidReply(self.code, "reply does not answer exactly the subjects asked", ref)
        results = []
        for person in wire.data:
            assets = tuple(self._vehicle(v) for v in person.vehicles)
            status = SubjectStatus.FOUND if assets else SubjectStatus.NONE
            results.append(SubjectResult(subject_ref=person.seq, status=status, assets=assets))
        return self.checked_query(QueryReply(request_ref=ref, results=tuple(results)))

    def _vehicle(self, wire: WireVehicle) -> AssetReport:
        kind = PLATE_TYPES.get(wire.hpzl, f"号牌种类 {wire.hpzl}")
        return AssetReport(
            asset_kind=AssetKind.VEHICLE,
            identifier=wire.hphm,
            description=f"{wire.clpp} {kind}".strip(),
            other_measures=tuple(OtherMeasure(authority=s.jg, expires_on=s.jzrq) for s in wire.cfxx),
        )

    async def control(self, request: ControlRequest) -> ControlReply:
        if request.kind is not MeasureKind.SEIZURE or request.amount_fen is not None:
            raise RejectedError(
                self.code, "a vehicle registry takes seizures of whole vehicles only", request.idempotency_key
            )
        body = {
            "lsh": request.idempotency_key,
            "ah": request.case_number,
            "seq": request.subject_ref,
            "hphm": request.asset_identifier,
            "nx": request.years,
        }
        return await self.send_control("/api/vehicle/seize", request.idempotency_key, json_body=body)

    async def renew(self, request: RenewRequest) -> ControlReply:
        path = f"/api/vehicle/seize/{request.registry_reference}/renew"
        body = {"lsh": request.idempotency_key, "nx": request.years}
        return await self.send_control(path, request.idempotency_key, json_body=body)

    async def release(self, request: ReleaseRequest) -> ControlReply:
        if request.amount_fen is not None:
            raise RejectedError(self.code, "a seizure is released whole", request.idempotency_key)
        path = f"/api/vehicle/seize/{request.registry_reference}/release"
        return await self.send_control(
            path, request.idempotency_key, json_body={"lsh": request.idempotency_key}
        )

    def control_reply(self, response: httpx.Response, key: str) -> ControlReply:
        wire = parse_json(response, WireSeize, self.code, key)
        reply = ControlReply(
            idempotency_key=key,
            outcome=_RESULTS[wire.jg],
            registry_reference=wire.cfh,
            started_on=wire.ksrq,
            expires_on=wire.jsrq,
            queue_position=wire.lhxh,
            ahead=None if wire.qx is None else OtherMeasure(authority=wire.qx.jg, expires_on=wire.qx.jzrq),
            reason=wire.yy,
        )
        return self.checked(reply, wire.lsh)
