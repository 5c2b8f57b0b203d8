"""The real-estate adapter against mocked HTTP: exact XML requests, every reply shape, XML attacks."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest
import respx
from defusedxml.ElementTree import fromstring

from connectors.base import (
    ControlOutcome,
    ControlRequest,
    InvalidReply,
    MeasureKind,
    QueryRequest,
    RejectedError,
    Subject,
    SubjectStatus,
)
from connectors.http import ClientLimits
from connectors.property import PropertyConnector
from models.values import DebtorKind
from tests.adapters import mocked

BASE = "https://re.test"
ID = "11010519491231002X"
LIMITS = ClientLimits(
    backoff_initial_s=0.001,
    backoff_max_s=0.002,
    max_attempts=2,
    requests_per_second=0,
    max_body_bytes=64 * 1024,
)
XML = {"content-type": "application/xml"}


@pytest.fixture
async def registry() -> AsyncIterator[PropertyConnector]:
    connector = PropertyConnector(mocked("re-a", BASE, "tok", LIMITS))
    yield connector
    await connector.aclose()


def query() -> QueryRequest:
    return QueryRequest(
        request_ref="q-1",
        subjects=(
            Subject(ref="d1", kind=DebtorKind.PERSON, id_number=ID, name="张三"),
            Subject(ref="d2", kind=DebtorKind.ORGANISATION, id_number="91350100M000100Y43", name="某某公司"),
        ),
    )


FOUND = """<?xml version="1.0" encoding="utf-8"?><QueryResponse ref="q-1" state="DONE">
<Subject ref="d1"><Property certNo="豫(2021)登封市不动产权第0000001号" location="登封市嵩阳路1号" area="89.50">
<Restriction authority="（2025）京0105执9号" until="2027-06-30"/></Property></Subject><Subject ref="d2"/></QueryResponse>"""


@respx.mock
async def test_query_request_and_reply(registry: PropertyConnector) -> None:
    route = respx.post(f"{BASE}/rest/query").respond(200, content=FOUND.encode(), headers=XML)
    reply = await registry.query(query())
    sent = route.calls.last.request
    assert sent.headers["content-type"].startswith("application/xml")
    assert sent.headers["authorization"] == "Bearer tok"
    root = fromstring(sent.content)
    assert (root.tag, root.get("ref")) == ("QueryRequest", "q-1")
    assert [(s.get("ref"), s.get("idType"), s.get("idNo")) for s in root] == [
        ("d1", "SFZ", ID),
        ("d2", "TYSHXYDM", "91350100M000100Y43"),
    ]
    d1, d2 = reply.results
    assert d1.status is SubjectStatus.FOUND and d2.status is SubjectStatus.NONE
    (house,) = d1.assets
    assert house.description == "登封市嵩阳路1号, 89.50 m²"
    assert house.other_measures[0].expires_on == dt.date(2027, 6, 30)


BILLION_LAUGHS = b"""<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;">]><QueryResponse ref="q-1" state="DONE">&lol3;</QueryResponse>"""
EXTERNAL = b"""<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<QueryResponse ref="q-1" state="DONE"><Subject ref="d1">&x;</Subject></QueryResponse>"""


@respx.mock
@pytest.mark.parametrize(
    ("content", "headers", "reason"),
    [
        (BILLION_LAUGHS, XML, "DTDs or entities, which are refused"),
        (EXTERNAL, XML, "DTDs or entities, which are refused"),
        (b"<QueryResponse ref='q-1'><Subject", XML, "not well-formed XML"),
        (FOUND.encode(), {"content-type": "application/json"}, "expected XML"),
        (b"<Other/>", XML, "expected <QueryResponse>"),
        (b"<QueryResponse ref='q-9' state='DONE'/>", XML, "another request"),
        (b"<QueryResponse ref='q-1' state='MAYBE'/>", XML, "state must be DONE or ACCEPTED"),
        (
            b"<QueryResponse ref='q-1' state='DONE'><Subject ref='d1'/></QueryResponse>",
            XML,
            "exactly the subjects",
        ),
        (
            b"<QueryResponse ref='q-1' state='DONE'><Subject ref='d1'><Property/></Subject><Subject ref='d2'/>"
            b"</QueryResponse>",
            XML,
            "needs its certNo",
        ),
        (
            b"<QueryResponse ref='q-1' state='DONE'><Subject ref='d1'><Property certNo='c' area='-3'/></Subject>"
            b"<Subject ref='d2'/></QueryResponse>",
            XML,
            "area must be a positive number",
        ),
        (
            b"<QueryResponse ref='q-1' state='DONE'><Subject ref='d1'><Property certNo='c'><Restriction "
            b"authority='a' until='2027/01/01'/></Property></Subject><Subject ref='d2'/></QueryResponse>",
            XML,
            "dates are written YYYY-MM-DD",
        ),
        (b"<x>" + b"a" * 70_000 + b"</x>", XML, "over the size limit"),
    ],
)
async def test_bad_and_hostile_replies(
    registry: PropertyConnector, content: bytes, headers: dict[str, str], reason: str
) -> None:
    respx.post(f"{BASE}/rest/query").respond(200, content=content, headers=headers)
    with pytest.raises(InvalidReply, match=reason) as caught:
        await registry.query(query())
    assert ID not in str(caught.value) and "passwd" not in str(caught.value)


@respx.mock
async def test_seizure_request_and_queued_reply(registry: PropertyConnector) -> None:
    route = respx.post(f"{BASE}/rest/seizures").respond(
        200,
        headers=XML,
        content=(
            b"<SeizureResponse key='key-00000001' result='QUEUED' docNo='RE-1' start='2026-11-23' end='2029-11-22' "
            b"queue='2'><Ahead authority='other court' until='2027-06-30'/></SeizureResponse>"
        ),
    )
    request = ControlRequest(
        idempotency_key="key-00000001",
        case_number="（2026）豫0185执1号",
        subject_ref="d1",
        asset_identifier="豫(2021)登封市不动产权第0000001号",
        kind=MeasureKind.SEIZURE,
        years=3,
    )
    reply = await registry.control(request)
    sent = fromstring(route.calls.last.request.content)
    assert dict(sent.attrib) == {
        "key": "key-00000001",
        "caseNo": "（2026）豫0185执1号",
        "subjectRef": "d1",
        "certNo": "豫(2021)登封市不动产权第0000001号",
        "years": "3",
    }
    assert (reply.outcome, reply.queue_position, reply.registry_reference) == (
        ControlOutcome.QUEUED,
        2,
        "RE-1",
    )
    assert reply.ahead is not None and reply.ahead.expires_on == dt.date(2027, 6, 30)


@respx.mock
async def test_status_reads_the_xml_error_code(registry: PropertyConnector) -> None:
    respx.get(f"{BASE}/rest/requests/key-unknown-1").respond(
        404, content=b"<Error code='unknown_key'/>", headers=XML
    )
    assert await registry.status("key-unknown-1") is None
    respx.get(f"{BASE}/rest/requests/key-other-01").respond(
        403, content=b"<Error code='forbidden'/>", headers=XML
    )
    with pytest.raises(RejectedError, match=r"refused \(403\): forbidden"):
        await registry.status("key-other-01")


async def test_a_freeze_with_an_amount_is_not_for_real_estate(registry: PropertyConnector) -> None:
    request = ControlRequest(
        idempotency_key="key-00000001",
        case_number="c",
        subject_ref="d1",
        asset_identifier="x",
        kind=MeasureKind.FREEZE,
        amount_fen=100,
    )
    with pytest.raises(RejectedError, match="seizures of whole properties only"):
        await registry.control(request)
