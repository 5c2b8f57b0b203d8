"""The simulators' request quota (what a real registry enforces): a bucket of `burst` refilled at `rate` a
second; over it, 429 with Retry-After, counted, before any work is done."""

from __future__ import annotations

import httpx
import pytest

from connectors.simulator import base
from connectors.simulator.bank import BankSimulator


def test_the_bucket_refills_at_its_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(base.time, "monotonic", lambda: clock[0])
    quota = base.Quota(rate=2, burst=3)
    assert [quota.take() for _ in range(4)] == [True, True, True, False]
    clock[0] += 0.5  # one request's worth
    assert [quota.take(), quota.take()] == [True, False]
    clock[0] += 10  # never more than the burst
    assert sum(quota.take() for _ in range(5)) == 3
    assert quota.refused == 4


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (1, 0.5)])
def test_a_quota_needs_a_rate_and_a_burst(rate: float, burst: float) -> None:
    with pytest.raises(ValueError, match="rate > 0 and burst >= 1"):
        base.Quota(rate, burst)


async def test_over_the_quota_the_simulator_answers_429_and_counts_it() -> None:
    sim = BankSimulator("bank-a", "tok")
    sim.quota = base.Quota(rate=0.001, burst=1)
    transport = httpx.ASGITransport(app=sim.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as client:
        headers = {"authorization": "Bearer tok"}
        first = await client.post("/v1/queries", json={}, headers=headers)
        second = await client.post("/v1/queries", json={}, headers=headers)
        ledger = (await client.get("/_sim/ledger")).json()
    assert first.status_code != 429
    assert second.status_code == 429 and second.headers["retry-after"] == "1"
    assert ledger["refused_over_quota"] == 1
