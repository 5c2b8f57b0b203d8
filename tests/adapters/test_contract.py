"""One contract that every adapter passes against its simulator, over real HTTP on 127.0.0.1.

Each simulator's own ledger is the referee: what it holds must be what the adapter reported, and no
measure is ever placed twice, with faults on or off.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from connectors.adapter import HttpConnector
from connectors.bank import BankConnector
from connectors.base import (
    ControlOutcome,
    ControlRequest,
    DeductRequest,
    MeasureKind,
    QueryRequest,
    RegistryError,
    ReleaseRequest,
    RenewRequest,
    Subject,
    SubjectStatus,
)
from connectors.http import ClientLimits, RegistryClient
from connectors.property import PropertyConnector
from connectors.simulator.bank import BankSimulator
from connectors.simulator.base import RegistrySimulator
from connectors.simulator.ledger import Restriction
from connectors.simulator.property import PropertySimulator
from connectors.simulator.synthetic import resident_id
from connectors.simulator.vehicle import VehicleSimulator
from connectors.vehicle import VehicleConnector
from models.values import DebtorKind
from tests.simserver import serve

TODAY = dt.date(2026, 11, 23)
TOKEN = "sim-token"
LIMITS = ClientLimits(
    timeout_s=0.5,
    backoff_initial_s=0.01,
    backoff_max_s=0.05,
    max_attempts=6,
    breaker_failures=50,
    requests_per_second=0,
)
OTHER = Restriction("（2025）京0105执9号", None, dt.date(2027, 6, 30))


def person(i: int) -> Subject:
    return Subject(ref=f"d{i}", kind=DebtorKind.PERSON, id_number=resident_id(random.Random(i)), name="某人")


@dataclass
class Kit:
    """How one registry kind is set up and asked, for the shared contract."""

    name: str
    simulator: Callable[[], RegistrySimulator]
    connector: type[HttpConnector]
    add: Callable[[Any, str, str, list[Restriction]], None]  # (simulator, owner id, asset id, others)
    asset: Callable[[int], str]  # the n-th asset identifier
    measure: MeasureKind
    amount: int | None
    term_years: int


def _add_account(sim: BankSimulator, owner: str, account: str, others: list[Restriction]) -> None:
    sim.add_account(owner, account, 500_000, [Restriction(r.authority, 500_000, r.until) for r in others])


KITS = [
    Kit(
        "bank",
        lambda: BankSimulator("bank-a", TOKEN, today=TODAY),
        BankConnector,
        _add_account,
        lambda n: f"62220200{n:08d}",
        MeasureKind.FREEZE,
        200_000,
        1,
    ),
    Kit(
        "real_estate",
        lambda: PropertySimulator("re-a", TOKEN, today=TODAY),
        PropertyConnector,
        lambda sim, owner, cert, others: sim.add_property(owner, cert, "登封市嵩阳路1号", "89.50", others),
        lambda n: f"豫(2021)登封市不动产权第{n:07d}号",
        MeasureKind.SEIZURE,
        None,
        3,
    ),
    Kit(
        "vehicle",
        lambda: VehicleSimulator("dmv-a", TOKEN, today=TODAY),
        VehicleConnector,
        lambda sim, owner, plate, others: sim.add_vehicle(owner, plate, "02", "大众牌", others),
        lambda n: f"豫A{n:05d}",
        MeasureKind.SEIZURE,
        None,
        2,
    ),
]


@pytest.fixture(params=KITS, ids=lambda k: k.name)
def kit(request: pytest.FixtureRequest) -> Kit:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def sim(kit: Kit) -> RegistrySimulator:
    simulator = kit.simulator()
    kit.add(simulator, person(1).id_number, kit.asset(1), [])
    kit.add(simulator, person(1).id_number, kit.asset(2), [])
    kit.add(simulator, person(2).id_number, kit.asset(3), [OTHER])
    return simulator


@pytest.fixture
def url(sim: RegistrySimulator) -> Iterator[str]:
    with serve(sim.app) as base:
        yield base


@pytest.fixture
async def conn(kit: Kit, url: str) -> AsyncIterator[HttpConnector]:
    connector = kit.connector(RegistryClient("reg", url, SecretStr(TOKEN), LIMITS))
    yield connector
    await connector.aclose()


async def set_faults(url: str, **plan: float) -> None:
    async with httpx.AsyncClient(base_url=url) as control:
        (await control.put("/_sim/faults", json=plan)).raise_for_status()


def control(kit: Kit, key: str, asset: str, ref: str = "d1", amount: int | None = None) -> ControlRequest:
    return ControlRequest(
        idempotency_key=key,
        case_number="（2026）豫0185执1号",
        subject_ref=ref,
        asset_identifier=asset,
        kind=kit.measure,
        amount_fen=amount or kit.amount,
        years=kit.term_years,
    )


async def test_query_reports_hits_none_and_others_measures(conn: HttpConnector) -> None:
    reply = await conn.query(QueryRequest(request_ref="q-1", subjects=(person(1), person(2), person(3))))
    by_ref = {r.subject_ref: r for r in reply.results}
    assert len(by_ref["d1"].assets) == 2
    assert by_ref["d2"].assets[0].other_measures[0].expires_on == OTHER.until
    assert by_ref["d3"].status is SubjectStatus.NONE


async def test_control_queue_repeat_status_renew_release(
    kit: Kit, conn: HttpConnector, sim: RegistrySimulator
) -> None:
    placed = await conn.control(control(kit, "key-place-0001", kit.asset(1)))
    assert placed.outcome is ControlOutcome.EFFECTIVE
    assert placed.started_on == TODAY
    assert placed.expires_on == dt.date(TODAY.year + kit.term_years, 11, 22)
    assert await conn.control(control(kit, "key-place-0001", kit.asset(1))) == placed
    assert await conn.status("key-place-0001") == placed
    assert await conn.status("key-never-sent") is None

    queued = await conn.control(control(kit, "key-queue-0001", kit.asset(3), ref="d2"))
    assert (queued.outcome, queued.queue_position) == (ControlOutcome.QUEUED, 2)
    assert queued.ahead is not None and queued.ahead.authority == OTHER.authority

    refused = await conn.control(control(kit, "key-nothing-01", kit.asset(99)))
    assert refused.outcome is ControlOutcome.REFUSED

    assert placed.registry_reference is not None
    renewed = await conn.renew(
        RenewRequest(
            idempotency_key="key-renew-0001",
            registry_reference=placed.registry_reference,
            years=kit.term_years,
        )
    )
    assert renewed.expires_on == dt.date(TODAY.year + 2 * kit.term_years, 11, 22)
    released = await conn.release(
        ReleaseRequest(
            idempotency_key="key-release-01",
            registry_reference=placed.registry_reference,
        )
    )
    assert released.outcome is ControlOutcome.RELEASED
    statuses = {m.key: m.status for m in sim.ledger.measures.values()}
    assert statuses == {"key-place-0001": "released", "key-queue-0001": "queued"}


async def test_a_queued_measure_takes_effect_when_the_earlier_one_lapses(
    kit: Kit, conn: HttpConnector, sim: RegistrySimulator, url: str
) -> None:
    queued = await conn.control(control(kit, "key-queue-0002", kit.asset(3), ref="d2"))
    assert queued.outcome is ControlOutcome.QUEUED
    async with httpx.AsyncClient(base_url=url) as clock:
        (await clock.post("/_sim/clock", json={"now": "2027-07-01T09:00:00+08:00"})).raise_for_status()
    (measure,) = sim.ledger.measures.values()
    assert (measure.status, measure.start, measure.queue_no) == ("effective", dt.date(2027, 7, 1), None)
    reply = await conn.query(QueryRequest(request_ref="q-2", subjects=(person(2),)))
    assert reply.results[0].assets[0].other_measures == ()


async def test_a_lost_reply_is_resolved_by_status_and_never_placed_twice(
    kit: Kit, conn: HttpConnector, sim: RegistrySimulator, url: str
) -> None:
    await set_faults(url, lost=1.0)
    reply = await conn.control(control(kit, "key-lost-00001", kit.asset(1)))
    assert reply.outcome is ControlOutcome.EFFECTIVE
    assert [m.key for m in sim.ledger.measures.values()] == ["key-lost-00001"]


async def test_a_control_answer_that_comes_later_is_collected_by_its_key(
    kit: Kit, conn: HttpConnector, sim: RegistrySimulator, url: str
) -> None:
    await set_faults(url, later=1.0)
    reply = await conn.control(control(kit, "key-later-0001", kit.asset(1)))
    assert (reply.outcome, reply.registry_reference) == (ControlOutcome.PENDING, None)
    collected = await conn.status("key-later-0001")
    assert collected is not None and collected.outcome is ControlOutcome.EFFECTIVE
    assert collected.registry_reference == next(iter(sim.ledger.measures))


async def test_answers_that_come_later_are_collected(conn: HttpConnector, url: str) -> None:
    await set_faults(url, later=1.0)
    reply = await conn.query(QueryRequest(request_ref="q-late", subjects=(person(1),)))
    assert [r.status for r in reply.results] == [SubjectStatus.PENDING]
    collected = await conn.collect("q-late")
    assert [(r.subject_ref, len(r.assets)) for r in collected.results] == [("d1", 2)]


async def test_health_and_credentials(kit: Kit, conn: HttpConnector, url: str) -> None:
    assert (await conn.health()).ok
    wrong = kit.connector(RegistryClient("reg", url, SecretStr("wrong"), LIMITS))
    try:
        health = await wrong.health()
        assert (health.ok, health.detail) == (False, "refused (401): unauthorized")
        with pytest.raises(RegistryError, match="401"):
            await wrong.query(QueryRequest(request_ref="q-x", subjects=(person(1),)))
    finally:
        await wrong.aclose()


@pytest.mark.parametrize("seed", [1, 2])
async def test_with_faults_the_ledger_and_the_replies_agree(
    kit: Kit, conn: HttpConnector, sim: RegistrySimulator, url: str, seed: int
) -> None:
    assets = [kit.asset(1000 + i) for i in range(30)]
    for i, asset in enumerate(assets):
        kit.add(sim, person(100 + i).id_number, asset, [])
    # Fault draws of 30 %: timeouts, 503, 429, garbage, late answers, lost replies.
    await set_faults(
        url,
        seed=seed,
        slow=0.04,
        error=0.08,
        throttle=0.06,
        garbage=0.04,
        later=0.04,
        lost=0.04,
        slow_s=1.0,
        retry_after_s=0.01,
    )
    replies, failures = {}, 0
    for i, asset in enumerate(assets):
        key = f"key-fault-{seed}-{i:04d}"
        try:
            reply = await conn.control(control(kit, key, asset))
            if reply.outcome is ControlOutcome.PENDING:  # "accepted, answer later": collected by its key
                reply = await conn.status(key) or reply
            replies[key] = reply
        except RegistryError:
            failures += 1  # stays "requested" in the case book; resolved later by its key
    placed = {m.key: m for m in sim.ledger.measures.values()}
    assert len(placed) == len({m.identifier for m in placed.values()}), "one measure per asset: none twice"
    for key, reply in replies.items():
        assert reply.outcome is ControlOutcome.EFFECTIVE
        assert placed[key].number == reply.registry_reference
        assert placed[key].held_fen == reply.amount_fen
    assert failures <= 3
    await set_faults(url, seed=0)
    for key in set(placed) - set(replies):
        resolved = await conn.status(key)
        assert resolved is not None and resolved.registry_reference == placed[key].number
    health = await conn.health()
    assert health.ok


@pytest.mark.parametrize("kit", [KITS[0]], ids=["bank"], indirect=True)
async def test_bank_partial_freeze_partial_release_and_deduction(
    conn: BankConnector, sim: BankSimulator
) -> None:
    first = await conn.control(control(KITS[0], "key-big-000001", KITS[0].asset(1), amount=400_000))
    partial = await conn.control(control(KITS[0], "key-part-00001", KITS[0].asset(1), amount=300_000))
    assert (partial.outcome, partial.amount_fen) == (ControlOutcome.PARTIAL, 100_000)
    assert first.registry_reference is not None
    cut = await conn.release(
        ReleaseRequest(
            idempotency_key="key-cut-000001", registry_reference=first.registry_reference, amount_fen=150_000
        )
    )
    assert (cut.outcome, cut.amount_fen) == (ControlOutcome.EFFECTIVE, 250_000)
    deducted = await conn.deduct(
        DeductRequest(
            idempotency_key="key-deduct-0001",
            registry_reference=first.registry_reference,
            amount_fen=100_000,
            court_account="4100000000000001",
        )
    )
    assert (deducted.amount_fen, deducted.transferred_on) == (100_000, TODAY)
    assert sim.ledger.holdings[KITS[0].asset(1)].balance_fen == 400_000
    assert sim.ledger.measures[first.registry_reference].held_fen == 150_000


@pytest.mark.parametrize("kit", [KITS[0]], ids=["bank"], indirect=True)
async def test_bank_deposits_top_up_a_partial_freeze(
    conn: BankConnector, sim: BankSimulator, url: str
) -> None:
    partial = await conn.control(control(KITS[0], "key-topup-0001", KITS[0].asset(2), amount=800_000))
    assert partial.amount_fen == 500_000
    sim.ledger.schedule_deposit(dt.datetime(2026, 11, 23, 10, tzinfo=dt.UTC), KITS[0].asset(2), 200_000)
    async with httpx.AsyncClient(base_url=url) as clock:
        await clock.post("/_sim/clock", json={"now": "2026-11-23T11:00:00+00:00"})
    assert partial.registry_reference is not None
    assert sim.ledger.measures[partial.registry_reference].held_fen == 700_000
