"""The vehicle adapter against mocked HTTP: the registry's own field names and codes, bad replies."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
import respx

from connectors.base import ControlOutcome, ControlRequest, InvalidReply, MeasureKind, QueryRequest, Subject
from connectors.http import ClientLimits
from connectors.vehicle import VehicleConnector
from models.values import DebtorKind
from tests.adapters import mocked

BASE = "https://dmv.test"
ID = "11010519491231002X"


@pytest.fixture
async def dmv() -> AsyncIterator[VehicleConnector]:
    connector = VehicleConnector(mocked("dmv-a", BASE, "tok", ClientLimits(requests_per_second=0)))
    yield connector
    await connector.aclose()


def query() -> QueryRequest:
    return QueryRequest(
        request_ref="q-1", subjects=(Subject(ref="d1", kind=DebtorKind.PERSON, id_number=ID, name="张三"),)
    )


@respx.mock
async def test_search_request_and_reply(dmv: VehicleConnector) -> None:
    route = respx.post(f"{BASE}/api/vehicle/search").respond(
        json={
            "reqNo": "q-1",
            "code": "0000",
            "data": [
                {
                    "seq": "d1",
                    "vehicles": [
                        {
                            "hphm": "豫A12345",
                            "hpzl": "02",
                            "clpp": "大众牌",
                            "cfxx": [{"jg": "（2025）京0105执9号", "jzrq": "2027-06-30"}],
                        }
                    ],
                }
            ],
        }
    )
    reply = await dmv.query(query())
    assert json.loads(route.calls.last.request.content) == {
        "reqNo": "q-1",
        "persons": [{"seq": "d1", "zjlx": "A", "zjhm": ID, "xm": "张三"}],
    }
    (car,) = reply.results[0].assets
    assert (car.identifier, car.description) == ("豫A12345", "大众牌 小型汽车")
    assert car.other_measures[0].authority == "（2025）京0105执9号"


@respx.mock
@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            {
                "reqNo": "q-1",
                "code": "0000",
                "data": [{"seq": "d1", "vehicles": [{"hphm": "ABC", "hpzl": "02"}]}],
            },
            "String should match pattern",
        ),
        ({"reqNo": "q-1", "code": "9999", "data": []}, "invalid reply"),
        ({"reqNo": "q-1", "code": "0000", "data": []}, "exactly the subjects asked"),
        ({"reqNo": "q-2", "code": "0000", "data": [{"seq": "d1"}]}, "another request"),
    ],
)
async def test_bad_replies(dmv: VehicleConnector, body: object, reason: str) -> None:
    respx.post(f"{BASE}/api/vehicle/search").respond(json=body)
    with pytest.raises(InvalidReply, match=reason):
        await dmv.query(query())


@respx.mock
async def test_seize_request_and_reply(dmv: VehicleConnector) -> None:
    route = respx.post(f"{BASE}/api/vehicle/seize").respond(
        json={"lsh": "key-00000001", "jg": "CF", "cfh": "DMV-1", "ksrq": "2026-11-23", "jsrq": "2028-11-22"}
    )
    request = ControlRequest(
        idempotency_key="key-00000001",
        case_number="（2026）豫0185执1号",
        subject_ref="d1",
        asset_identifier="豫A12345",
        kind=MeasureKind.SEIZURE,
        years=2,
    )
    reply = await dmv.control(request)
    assert json.loads(route.calls.last.request.content) == {
        "lsh": "key-00000001",
        "ah": "（2026）豫0185执1号",
        "seq": "d1",
        "hphm": "豫A12345",
        "nx": 2,
    }
    assert (reply.outcome, reply.registry_reference) == (ControlOutcome.EFFECTIVE, "DMV-1")
