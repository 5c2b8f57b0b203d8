"""The court's bank adapter (connectors/court_bank.py): camt.054 entries and camt.053 balances read over
real HTTP from the simulator, and every reply that is not the format refused by name, never by value."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import httpx
import pytest
import respx
from pydantic import SecretStr

from connectors.base import InvalidReply
from connectors.court_bank import CAMT054, CourtBankConnector
from connectors.http import ClientLimits, RegistryClient
from connectors.simulator.court_bank import CourtBankSimulator
from connectors.simulator.faults import FaultPlan
from connectors.simulator.serve import serving_in_background

TOKEN = "sim-token"


def connector(url: str, page: int = 2_000) -> CourtBankConnector:
    limits = ClientLimits(backoff_initial_s=0.01, backoff_max_s=0.05)
    return CourtBankConnector(RegistryClient("court-bank", url, SecretStr(TOKEN), limits), page=page)


def test_sub_accounts_entries_and_balances_round_trip_over_http_through_faults() -> None:
    sim = CourtBankSimulator("court-bank", TOKEN, today=dt.date(2026, 12, 7))
    sim.faults = FaultPlan(seed=3, error=0.2, throttle=0.1, retry_after_s=0.01)

    async def run(url: str) -> None:
        bank = connector(url, page=2)
        first = await bank.open_subaccount("sub-1-100", "（2026）京0105执1号")
        assert await bank.open_subaccount("sub-1-100", "（2026）京0105执1号") == first, "one number per key"
        other = await bank.open_subaccount("sub-2-100", "（2026）京0105执2号")
        assert other != first
        paid = sim.credit(
            1_000_00, first, payer_name="张三", payer_account="6222000011112222", remittance="还款"
        )
        sim.credit(50_00, None)
        sim.reverse(paid.reference)
        seen, after = [], 0
        while True:
            page = await bank.entries(after)
            if not page.lines:
                break
            seen.extend(page.lines)
            after = page.last
        assert [(x.seq, x.credit, x.amount_fen) for x in seen] == [
            (1, True, 1_000_00),
            (2, True, 50_00),
            (3, False, 1_000_00),
        ]
        assert (
            seen[0].subaccount == first
            and seen[0].counterparty_name == "张三"
            and seen[0].remittance == "还款"
        )
        assert seen[1].subaccount is None and seen[2].reversal_of == paid.reference
        assert "6222000011112222" not in repr(seen[0]) and "张三" not in repr(seen[0])
        balances = await bank.balances()
        assert balances.through == 3
        assert balances.accounts == {sim.books.master: 50_00, first: 0, other: 0}
        assert (await bank.balances(through=1)).accounts[first] == 1_000_00
        await bank.aclose()

    with serving_in_background(sim.app) as url:
        asyncio.run(run(url))
    assert sim.faults.injected, "faults were met and retried"


def test_the_statement_can_be_followed_by_long_poll() -> None:
    """The bank holds an ask for new entries until one is booked (its push), or until the wait ends."""
    sim = CourtBankSimulator("court-bank", TOKEN, today=dt.date(2026, 12, 7))

    async def run(url: str) -> tuple[float, float, int]:
        bank = connector(url)
        started = time.monotonic()
        empty = await bank.entries(0, wait_s=0.5)
        waited = time.monotonic() - started
        asyncio.get_running_loop().call_later(0.3, lambda: sim.credit(7_00, None))
        started = time.monotonic()
        page = await bank.entries(0, wait_s=5)
        booked_to_read = time.monotonic() - started
        await bank.aclose()
        assert not empty.lines and empty.last == 0
        return waited, booked_to_read, len(page.lines)

    with serving_in_background(sim.app) as url:
        waited, took, lines = asyncio.run(run(url))
    assert waited >= 0.5 and lines == 1, "nothing came: the wait ran out; then the entry came"
    assert 0.3 <= took < 2.0, f"the entry was read {took:.2f} s after the ask, not at the wait's end"


BAD = {
    "not XML": (b'{"entries": []}', "application/json", "expected XML"),
    "a DTD": (b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "b">]><Document/>', "application/xml", "DTD"),
    "another root": (b"<Statement/>", "application/xml", "root element"),
    "an amount in words": ("AMOUNT=lots", "application/xml", "Amt"),
    "a negative amount": ("AMOUNT=-5.00", "application/xml", "Amt"),
    "another currency": ("CCY=USD", "application/xml", "CNY"),
    "entries out of order": ("ORDER", "application/xml", "out of order"),
    "a reversal naming nothing": ("REVERSAL", "application/xml", "does not name"),
}


def _entries(
    amount: str = "10.00", ccy: str = "CNY", seqs: tuple[int, ...] = (1,), reversal: bool = False
) -> bytes:
    body = "".join(
        f"<Ntry><NtryRef>{seq}</NtryRef><Amt Ccy='{ccy}'>{amount}</Amt><CdtDbtInd>CRDT</CdtDbtInd>"
        f"<RvslInd>{'true' if reversal else 'false'}</RvslInd><BookgDt><DtTm>2026-12-07T01:00:00+00:00</DtTm>"
        f"</BookgDt><ValDt><Dt>2026-12-07</Dt></ValDt><AcctSvcrRef>CB{seq}</AcctSvcrRef></Ntry>"
        for seq in seqs
    )
    return (
        f"<Document xmlns='{CAMT054}'><BkToCstmrDbtCdtNtfctn><Ntfctn>{body}</Ntfctn>"
        "</BkToCstmrDbtCdtNtfctn></Document>"
    ).encode()


@pytest.mark.parametrize("case", list(BAD))
@respx.mock
def test_a_statement_that_is_not_the_format_is_refused_by_name(case: str) -> None:
    body, media, words = BAD[case]
    if isinstance(body, str):
        rule = body
        body = {
            "AMOUNT=lots": _entries(amount="lots"),
            "AMOUNT=-5.00": _entries(amount="-5.00"),
            "CCY=USD": _entries(ccy="USD"),
            "ORDER": _entries(seqs=(2, 1)),
            "REVERSAL": _entries(reversal=True),
        }[rule]
    respx.get("http://bank.test/v1/entries").mock(
        return_value=httpx.Response(200, content=body, headers={"content-type": media})
    )
    bank = CourtBankConnector(
        RegistryClient(
            "court-bank", "http://bank.test", SecretStr(TOKEN), transport=httpx.AsyncHTTPTransport()
        )
    )
    with pytest.raises(InvalidReply, match=words) as caught:
        asyncio.run(bank.entries(0))
    assert "lots" not in str(caught.value) and "-5.00" not in str(caught.value)
