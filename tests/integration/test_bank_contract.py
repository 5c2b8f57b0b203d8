"""The bank adapter against the bank simulator over real HTTP: every operation, then the same with faults.

The simulator's own ledger is the referee: what it froze must be what the adapter reported, and no freeze
is ever applied twice.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from pydantic import SecretStr

from clerk.synthetic import resident_id
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
from connectors.simulator.bank import BankSimulator, Restriction
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


def person(i: int) -> Subject:
    return Subject(ref=f"d{i}", kind=DebtorKind.PERSON, id_number=resident_id(random.Random(i)), name="某人")


@pytest.fixture
def sim() -> BankSimulator:
    bank = BankSimulator("bank-a", TOKEN, today=TODAY)
    bank.add_account(person(1).id_number, "6222020000000001", 500_000)
    bank.add_account(person(1).id_number, "6222020000000002", 30_000)
    bank.add_account(
        person(2).id_number,
        "6222020000000003",
        80_000,
        [Restriction("（2025）京0105执9号", 80_000, dt.date(2027, 6, 30))],
    )
    return bank


@pytest.fixture
def url(sim: BankSimulator) -> Iterator[str]:
    with serve(sim.app) as base:
        yield base


@pytest.fixture
async def bank(url: str) -> AsyncIterator[BankConnector]:
    connector = BankConnector(RegistryClient("bank-a", url, SecretStr(TOKEN), LIMITS))
    yield connector
    await connector.aclose()


def freeze(key: str, account: str, amount: int, ref: str = "d1") -> ControlRequest:
    return ControlRequest(
        idempotency_key=key,
        case_number="（2026）豫0185执1号",
        subject_ref=ref,
        asset_identifier=account,
        kind=MeasureKind.FREEZE,
        amount_fen=amount,
    )


async def test_every_operation(bank: BankConnector, sim: BankSimulator) -> None:
    reply = await bank.query(QueryRequest(request_ref="q-1", subjects=(person(1), person(2), person(3))))
    by_ref = {r.subject_ref: r for r in reply.results}
    assert [a.balance_fen for a in by_ref["d1"].assets] == [500_000, 30_000]
    assert by_ref["d2"].assets[0].other_measures[0].amount_fen == 80_000
    assert by_ref["d3"].status is SubjectStatus.NONE

    full = await bank.control(freeze("key-full-0001", "6222020000000001", 200_000))
    assert (full.outcome, full.amount_fen, full.started_on, full.expires_on) == (
        ControlOutcome.EFFECTIVE,
        200_000,
        TODAY,
        dt.date(2027, 11, 22),
    )
    partial = await bank.control(freeze("key-part-0001", "6222020000000002", 50_000))
    assert (partial.outcome, partial.amount_fen) == (ControlOutcome.PARTIAL, 30_000)
    queued = await bank.control(freeze("key-queue-001", "6222020000000003", 10_000, ref="d2"))
    assert (queued.outcome, queued.queue_position) == (ControlOutcome.QUEUED, 2)
    assert queued.ahead is not None and queued.ahead.expires_on == dt.date(2027, 6, 30)
    refused = await bank.control(freeze("key-none-0001", "6222029999999999", 10_000))
    assert (refused.outcome, refused.reason) == (ControlOutcome.REFUSED, "no_such_asset")

    again = await bank.control(freeze("key-full-0001", "6222020000000001", 200_000))
    assert again == full, "a repeated key gets the first answer"
    assert await bank.status("key-full-0001") == full
    assert await bank.status("key-never-seen") is None

    assert full.registry_reference is not None
    renewed = await bank.renew(
        RenewRequest(idempotency_key="key-renew-001", registry_reference=full.registry_reference)
    )
    assert renewed.expires_on == dt.date(2028, 11, 22)
    cut = await bank.release(
        ReleaseRequest(
            idempotency_key="key-cut-00001", registry_reference=full.registry_reference, amount_fen=50_000
        )
    )
    assert (cut.outcome, cut.amount_fen) == (ControlOutcome.EFFECTIVE, 150_000)
    deducted = await bank.deduct(
        DeductRequest(
            idempotency_key="key-deduct-01",
            registry_reference=full.registry_reference,
            amount_fen=100_000,
            court_account="4100000000000001",
        )
    )
    assert (deducted.amount_fen, deducted.transferred_on) == (100_000, TODAY)
    assert partial.registry_reference is not None
    gone = await bank.release(
        ReleaseRequest(idempotency_key="key-rel-00001", registry_reference=partial.registry_reference)
    )
    assert gone.outcome is ControlOutcome.RELEASED

    freezes = sim.ledger.measures
    assert freezes[full.registry_reference].held_fen == 50_000
    assert sim.ledger.holdings["6222020000000001"].balance_fen == 400_000
    assert freezes[partial.registry_reference].status == "released"
    health = await bank.health()
    assert health.ok


async def test_wrong_credential_is_refused(url: str) -> None:
    connector = BankConnector(RegistryClient("bank-a", url, SecretStr("wrong"), LIMITS))
    try:
        with pytest.raises(RegistryError, match=r"refused \(401\): unauthorized"):
            await connector.query(QueryRequest(request_ref="q-x", subjects=(person(1),)))
        assert not (await connector.health()).ok
    finally:
        await connector.aclose()


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_with_faults_nothing_is_frozen_twice_and_replies_match_the_ledger(
    bank: BankConnector, sim: BankSimulator, url: str, seed: int
) -> None:
    accounts = [f"62220210{i:08d}" for i in range(40)]
    for i, account in enumerate(accounts):
        sim.add_account(person(100 + i).id_number, account, 1_000_000)
    # Fault draws of 30 %: timeouts, 503, 429, garbage, lost replies (late answers do not apply to freezes).
    plan = {
        "seed": seed,
        "slow": 0.04,
        "error": 0.08,
        "throttle": 0.06,
        "garbage": 0.04,
        "later": 0.04,
        "lost": 0.04,
        "slow_s": 1.0,
        "retry_after_s": 0.01,
    }
    async with httpx.AsyncClient(base_url=url) as control:
        (await control.put("/_sim/faults", json=plan)).raise_for_status()

    replies, failures = {}, 0
    for i, account in enumerate(accounts):
        key = f"key-fault-{seed}-{i:04d}"
        try:
            replies[key] = await bank.control(freeze(key, account, 100_000 + i))
        except RegistryError:
            failures += 1  # the measure stays "requested"; a later run resolves it by its key

    frozen = {m.key: m for m in sim.ledger.measures.values()}
    assert len(frozen) == len({m.identifier for m in frozen.values()}), "one freeze per account: none twice"
    for key, reply in replies.items():
        assert reply.outcome is ControlOutcome.EFFECTIVE
        assert frozen[key].held_fen == reply.amount_fen
        assert frozen[key].number == reply.registry_reference
    assert failures <= 3, "nearly every fault is retried or resolved by the key's status at once"
    async with httpx.AsyncClient(base_url=url) as control:
        (await control.put("/_sim/faults", json={"seed": 0})).raise_for_status()
    for key in set(frozen) - set(replies):  # what failed is found by its key once the faults stop
        resolved = await bank.status(key)
        assert resolved is not None
        assert resolved.amount_fen == frozen[key].held_fen
