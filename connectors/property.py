"""The real-estate registry adapter (不动产登记中心): XML over HTTP, parsed safely.

Replies are parsed with defusedxml: no DTD, no entity declarations (no "billion laughs"), no external
entities; their size is bounded by the HTTP layer before parsing. Wire format (what
`connectors/simulator/property.py` serves):

    POST /rest/query                    <QueryRequest ref><Subject ref idType="SFZ|TYSHXYDM" idNo name/>…
    GET  /rest/query/{ref}              the answer to a query that was ACCEPTED
    POST /rest/seizures                 <SeizureRequest key caseNo subjectRef certNo years/>
    POST /rest/seizures/{docNo}/renewal <RenewRequest key years/>
    POST /rest/seizures/{docNo}/release <ReleaseRequest key/>
    GET  /rest/requests/{key}           a control request's first answer, or 404 <Error code="unknown_key"/>
    GET  /rest/health

    <QueryResponse ref state="DONE|ACCEPTED"><Subject ref><Property certNo location area>
        <Restriction authority until/></Property></Subject></QueryResponse>
    <SeizureResponse key result="SEIZED|QUEUED|ACCEPTED|REJECTED|RELEASED" docNo start end queue reason>
        <Ahead authority until/></SeizureResponse>
"""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from xml.etree.ElementTree import Element

import httpx

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
from connectors.http import parse_xml
from models.rules import AssetKind
from models.values import DebtorKind

XML = {"Content-Type": "application/xml; charset=utf-8"}
_ID_TYPES = {DebtorKind.PERSON: "SFZ", DebtorKind.ORGANISATION: "TYSHXYDM"}
_RESULTS = {
    "SEIZED": ControlOutcome.EFFECTIVE,
    "QUEUED": ControlOutcome.QUEUED,
    "ACCEPTED": ControlOutcome.PENDING,
    "REJECTED": ControlOutcome.REFUSED,
    "RELEASED": ControlOutcome.RELEASED,
}


def build(tag: str, children: list[Element] | None = None, **attrs: str) -> bytes:
    root = ET.Element(tag, {k: v for k, v in attrs.items()})
    root.extend(children or [])
    body: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return body


def children(element: Element, tag: str, registry: str, reference: str) -> list[Element]:
    """The element's children, all of which must be <tag>: anything else (another element, or the same name
    in another XML namespace) is a reply we do not understand, never read as "nothing there"."""
    found = list(element)
    if any(child.tag != tag for child in found):
        raise InvalidReply(
            registry, f"invalid reply: <{element.tag}> holds an element other than <{tag}>", reference
        )
    return found


class PropertyConnector(HttpConnector):
    kind = RegistryKind.REAL_ESTATE
    health_path = "/rest/health"

    def status_path(self, idempotency_key: str) -> str:
        return f"/rest/requests/{idempotency_key}"

    def measure_path(self, registry_reference: str) -> str:
        return f"/rest/seizures/{registry_reference}"

    # --- queries ---

    async def query(self, request: QueryRequest) -> QueryReply:
        subjects = [
            ET.Element(
                "Subject",
                {
                    "ref": s.ref,
                    "idType": "SFZ" if s.kind is DebtorKind.PERSON else "TYSHXYDM",
                    "idNo": s.id_number,
                    "name": s.name,
                },
            )
            for s in request.subjects
        ]
        body = build("QueryRequest", subjects, ref=request.request_ref)
        response = await self.client.call(
            "POST", "/rest/query", reference=request.request_ref, safe=True, content=body, headers=XML
        )
        return self._query_reply(response, request.request_ref, {s.ref for s in request.subjects})

    async def collect(self, request_ref: str) -> QueryReply:
        response = await self.client.call(
            "GET", f"/rest/query/{request_ref}", reference=request_ref, safe=True
        )
        return self._query_reply(response, request_ref, None)

    def _query_reply(self, response: httpx.Response, ref: str, asked: set[str] | None) -> QueryReply:
        root = parse_xml(response, self.code, ref, "QueryResponse")
        if root.get("ref") != ref:
            raise InvalidReply(self.code, "reply names another request", ref)
        state = root.get("state")
        subjects = children(root, "Subject", self.code, ref)
        refs = [s.get("ref") or "" for s in subjects]
        if state == "ACCEPTED":
            pending = sorted(asked) if asked is not None else refs
            results = tuple(SubjectResult(subject_ref=r, status=SubjectStatus.PENDING) for r in pending)
            return QueryReply(request_ref=ref, results=results)
        if state != "DONE":
            raise InvalidReply(self.code, "invalid reply: state must be DONE or ACCEPTED", ref)
        if len(refs) != len(set(refs)) or "" in refs:
            raise InvalidReply(self.code, "reply lists a subject twice or without its ref", ref)
        if asked is not None and set(refs) != asked:
            raise InvalidReply(self.code, "reply does not answer exactly the subjects asked", ref)
        out = []
        for subject in subjects:
            assets = tuple(self._property(p, ref) for p in children(subject, "Property", self.code, ref))
            status = SubjectStatus.FOUND if assets else SubjectStatus.NONE
            out.append(SubjectResult(subject_ref=subject.get("ref", ""), status=status, assets=assets))
        return self.checked_query(QueryReply(request_ref=ref, results=tuple(out)))

    def _property(self, element: Element, ref: str) -> AssetReport:
        cert = element.get("certNo", "")
        if not 1 <= len(cert) <= 64:
            raise InvalidReply(self.code, "invalid reply: a property needs its certNo", ref)
        area = element.get("area", "")
        try:
            if area and not 0 < float(area) < 1_000_000:
                raise ValueError
        except ValueError:
            raise InvalidReply(
                self.code, "invalid reply: area must be a positive number of m²", ref
            ) from None
        location = element.get("location", "")[:200]
        description = f"{location}, {area} m²" if area else location
        others = tuple(self._other(r, ref) for r in children(element, "Restriction", self.code, ref))
        return AssetReport(
            asset_kind=AssetKind.REAL_ESTATE, identifier=cert, description=description, other_measures=others
        )

    def _other(self, element: Element | None, ref: str) -> OtherMeasure:
        assert element is not None
        authority = element.get("authority", "")
        if not authority:
            raise InvalidReply(self.code, "invalid reply: a restriction needs its authority", ref)
        return OtherMeasure(authority=authority[:200], expires_on=_date(element.get("until"), self.code, ref))

    # --- control ---

    async def control(self, request: ControlRequest) -> ControlReply:
        if request.kind is not MeasureKind.SEIZURE or request.amount_fen is not None:
            raise RejectedError(
                self.code,
                "a real-estate registry takes seizures of whole properties only",
                request.idempotency_key,
            )
        body = build(
            "SeizureRequest",
            key=request.idempotency_key,
            caseNo=request.case_number,
            subjectRef=request.subject_ref,
            certNo=request.asset_identifier,
            years=str(request.years),
        )
        return await self.send_control("/rest/seizures", request.idempotency_key, content=body, headers=XML)

    async def renew(self, request: RenewRequest) -> ControlReply:
        body = build("RenewRequest", key=request.idempotency_key, years=str(request.years))
        path = f"/rest/seizures/{request.registry_reference}/renewal"
        return await self.send_control(path, request.idempotency_key, content=body, headers=XML)

    async def release(self, request: ReleaseRequest) -> ControlReply:
        if request.amount_fen is not None:
            raise RejectedError(self.code, "a seizure is released whole", request.idempotency_key)
        body = build("ReleaseRequest", key=request.idempotency_key)
        path = f"/rest/seizures/{request.registry_reference}/release"
        return await self.send_control(path, request.idempotency_key, content=body, headers=XML)

    def control_reply(self, response: httpx.Response, key: str) -> ControlReply:
        root = parse_xml(response, self.code, key, "SeizureResponse")
        result = root.get("result", "")
        if result not in _RESULTS:
            raise InvalidReply(self.code, "invalid reply: unknown result", key)
        queue = root.get("queue")
        if queue is not None and not (queue.isdigit() and int(queue) >= 1):
            raise InvalidReply(self.code, "invalid reply: queue must be a positive whole number", key)
        ahead = root.find("Ahead")
        reply = ControlReply(
            idempotency_key=key,
            outcome=_RESULTS[result],
            registry_reference=root.get("docNo"),
            started_on=_date(root.get("start"), self.code, key),
            expires_on=_date(root.get("end"), self.code, key),
            queue_position=int(queue) if queue else None,
            ahead=None if ahead is None else self._other(ahead, key),
            reason=(root.get("reason") or None) and root.get("reason", "")[:64],
        )
        return self.checked(reply, root.get("key", ""))


def _date(text: str | None, registry: str, ref: str) -> dt.date | None:
    if not text:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise InvalidReply(registry, "invalid reply: dates are written YYYY-MM-DD", ref) from None
