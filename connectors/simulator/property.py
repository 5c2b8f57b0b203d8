"""A real-estate registry, simulated: the XML API of `connectors/property.py` over the shared ledger."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from connectors.http import safe_xml
from connectors.simulator.base import CONTROL_FAULTS, READ_FAULTS, Refusal, RegistrySimulator
from connectors.simulator.faults import Fault
from connectors.simulator.ledger import Holding, Outcome, Restriction
from models.rules import AssetKind

_RESULTS = {"effective": "SEIZED", "queued": "QUEUED", "refused": "REJECTED", "released": "RELEASED"}


def xml(root: ET.Element, status: int = 200) -> Response:
    return Response(
        ET.tostring(root, encoding="utf-8", xml_declaration=True),
        status_code=status,
        media_type="application/xml",
    )


class PropertySimulator(RegistrySimulator):
    kind = "real_estate"

    def routes(self) -> list[Route]:
        return [
            Route("/rest/health", self.endpoint(frozenset(), self.health)),
            Route(
                "/rest/query", self.endpoint(frozenset(Fault) - {Fault.LOST}, self.query), methods=["POST"]
            ),
            Route("/rest/query/{ref}", self.endpoint(READ_FAULTS, self.collect)),
            Route("/rest/seizures", self.endpoint(CONTROL_FAULTS, self.seize), methods=["POST"]),
            Route(
                "/rest/seizures/{number}/renewal", self.endpoint(CONTROL_FAULTS, self.renew), methods=["POST"]
            ),
            Route(
                "/rest/seizures/{number}/release",
                self.endpoint(CONTROL_FAULTS, self.release),
                methods=["POST"],
            ),
            Route("/rest/requests/{key}", self.endpoint(READ_FAULTS, self.status)),
            Route("/rest/seizures/{number}", self.endpoint(READ_FAULTS, self.measure)),
        ]

    def error(self, status: int, error: str) -> Response:
        return xml(ET.Element("Error", {"code": error}), status)

    def garbage(self) -> Response:
        return Response(b"<QueryResponse ref='x'><Subject", media_type="application/xml")

    def add_property(
        self,
        owner_id: str,
        cert_no: str,
        location: str,
        area: str,
        restrictions: list[Restriction] | None = None,
    ) -> Holding:
        return self.ledger.add(
            Holding(
                cert_no,
                owner_id,
                AssetKind.REAL_ESTATE,
                description=f"{location}|{area}",
                restrictions=restrictions or [],
            )
        )

    @staticmethod
    async def _body(request: Request, tag: str) -> ET.Element:
        root = safe_xml(await request.body())
        if root.tag != tag:
            raise Refusal(400, "unexpected_document")
        return root

    async def health(self, request: Request, fault: Fault) -> Response:
        return xml(ET.Element("Health", {"status": "ok"}))

    async def query(self, request: Request, fault: Fault) -> Response:
        body = await self._body(request, "QueryRequest")
        ref = body.get("ref", "")
        done = ET.Element("QueryResponse", {"ref": ref, "state": "DONE"})
        for subject in body.findall("Subject"):
            answer = ET.SubElement(done, "Subject", {"ref": subject.get("ref", "")})
            for holding in self.ledger.holdings_of(subject.get("idNo", "")):
                location, _, area = holding.description.partition("|")
                tag = "{urn:example:other-registry}Property" if self.hostile.foreign_namespace else "Property"
                item = ET.SubElement(
                    answer, tag, {"certNo": holding.identifier, "location": location, "area": area}
                )
                for r in holding.restrictions:
                    ET.SubElement(
                        item, "Restriction", {"authority": r.authority, "until": r.until.isoformat()}
                    )
        accepted = xml(ET.Element("QueryResponse", {"ref": ref, "state": "ACCEPTED"}))
        return self.query_answer(ref, xml(done), accepted, fault)

    def pending_reply(self, key: str) -> Response:
        return xml(ET.Element("SeizureResponse", {"key": key, "result": "ACCEPTED"}))

    def reply(self, outcome: Outcome) -> Response:
        root = ET.Element("SeizureResponse", {"key": outcome.key, "result": _RESULTS[outcome.result]})
        m = outcome.measure
        if m is not None:
            root.attrib |= {"docNo": m.number, "start": m.start.isoformat(), "end": m.end.isoformat()}
            if m.queue_no is not None:
                root.set("queue", str(m.queue_no))
        if outcome.reason:
            root.set("reason", outcome.reason)
        if outcome.ahead is not None:
            ET.SubElement(
                root,
                "Ahead",
                {"authority": outcome.ahead.authority, "until": outcome.ahead.until.isoformat()},
            )
        return xml(root)

    async def seize(self, request: Request, fault: Fault) -> Response:
        body = await self._body(request, "SeizureRequest")
        async with self.lock:
            outcome = self.ledger.place(
                body.get("key", ""),
                body.get("caseNo", ""),
                body.get("certNo", ""),
                None,
                int(body.get("years", "3")),
            )
        return self.answer(outcome, fault)

    async def renew(self, request: Request, fault: Fault) -> Response:
        body = await self._body(request, "RenewRequest")
        async with self.lock:
            outcome = self.ledger.renew(
                body.get("key", ""), request.path_params["number"], int(body.get("years", "3"))
            )
        return self.answer(outcome, fault)

    async def release(self, request: Request, fault: Fault) -> Response:
        body = await self._body(request, "ReleaseRequest")
        async with self.lock:
            outcome = self.ledger.release(body.get("key", ""), request.path_params["number"], None)
        return self.answer(outcome, fault)
