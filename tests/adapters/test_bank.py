"""The bank adapter against mocked HTTP (respx): exact requests, every reply shape, retries, lost replies."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import pickle
from collections.abc import AsyncIterator

import httpx
import pytest
import respx
from pydantic import SecretStr

from connectors.bank import BankConnector
from connectors.base import (
    ControlOutcome,
    ControlRequest,
    InvalidReply,
    MeasureKind,
    QueryRequest,
    RegistryUnavailable,
    RejectedError,
    ReleaseRequest,
    Subject,
    SubjectStatus,
    TransientError,
    UnknownOutcome,
    UnreadableAnswer,
    is_refusal,
)
from connectors.http import ClientLimits, RegistryClient
from models.values import DebtorKind
from tests.adapters import mocked

BASE = "https://bank.test"
ID = "11010519491231002X"
FAST = ClientLimits(
    backoff_initial_s=0.001,
    backoff_max_s=0.002,
    max_attempts=3,
    breaker_failures=3,
    breaker_cooldown_s=60,
    requests_per_second=0,
    max_body_bytes=4096,
)


@pytest.fixture
async def bank() -> AsyncIterator[BankConnector]:
    connector = BankConnector(mocked("bank-a", BASE, "tok-123", FAST))
    yield connector
    await connector.aclose()


def query() -> QueryRequest:
    return QueryRequest(
        request_ref="q-1", subjects=(Subject(ref="d1", kind=DebtorKind.PERSON, id_number=ID, name="张三"),)
    )


def freeze(amount: int = 100_00) -> ControlRequest:
    return ControlRequest(
        idempotency_key="key-00000001",
        case_number="（2024）豫0185执1号",
        subject_ref="d1",
        asset_identifier="6222020000001234",
        kind=MeasureKind.FREEZE,
        amount_fen=amount,
    )


FOUND = {
    "request_ref": "q-1",
    "status": "done",
    "results": [
        {
            "ref": "d1",
            "accounts": [
                {
                    "account_no": "6222020000001234",
                    "balance": "1234.56",
                    "currency": "CNY",
                    "restrictions": [
                        {"authority": "（2023）京0105执9号", "amount": "1000.00", "until": "2025-06-30"}
                    ],
                }
            ],
        }
    ],
}


@respx.mock
async def test_query_sends_the_exact_request_and_parses_hits(bank: BankConnector) -> None:
    route = respx.post(f"{BASE}/v1/queries").respond(json=FOUND)
    reply = await bank.query(query())
    sent = route.calls.last.request
    assert sent.headers["authorization"] == "Bearer tok-123"
    assert sent.headers["x-request-ref"] == "q-1"
    assert json.loads(sent.content) == {
        "request_ref": "q-1",
        "subjects": [{"ref": "d1", "type": "P", "id_no": ID, "name": "张三"}],
    }
    (result,) = reply.results
    assert result.status is SubjectStatus.FOUND
    (asset,) = result.assets
    assert (asset.identifier, asset.balance_fen) == ("6222020000001234", 123_456)
    assert asset.other_measures[0].amount_fen == 100_000
    assert asset.other_measures[0].expires_on == dt.date(2025, 6, 30)
    assert "6222020000001234" not in repr(asset) and ID not in repr(query())


@respx.mock
async def test_no_account_and_answer_later(bank: BankConnector) -> None:
    respx.post(f"{BASE}/v1/queries").respond(json={"request_ref": "q-1", "status": "accepted"})
    reply = await bank.query(query())
    assert [r.status for r in reply.results] == [SubjectStatus.PENDING]
    respx.get(f"{BASE}/v1/queries/q-1").respond(
        json={"request_ref": "q-1", "status": "done", "results": [{"ref": "d1", "accounts": []}]}
    )
    collected = await bank.collect("q-1")
    assert [r.status for r in collected.results] == [SubjectStatus.NONE]


BAD_REPLIES = [
    (
        {
            "request_ref": "q-1",
            "status": "done",
            "results": [{"ref": "d1", "accounts": [{"account_no": "6222020000001234", "balance": "-5.00"}]}],
        },
        "balance: the value is negative",
    ),
    (
        {
            "request_ref": "q-1",
            "status": "done",
            "results": [{"ref": "d1", "accounts": [{"account_no": "6222020000001234", "balance": 12.5}]}],
        },
        "invalid reply",
    ),
    (
        {
            "request_ref": "q-1",
            "status": "done",
            "results": [{"ref": "d1", "accounts": [{"account_no": "6222020000001234", "balance": "1e99"}]}],
        },
        "not an amount",
    ),
    (
        {
            "request_ref": "q-1",
            "status": "done",
            "results": [
                {
                    "ref": "d1",
                    "accounts": [{"account_no": "6222020000001234", "balance": "999999999999999.00"}],
                }
            ],
        },
        "largest amount",
    ),
    (
        {
            "request_ref": "q-1",
            "status": "done",
            "results": [
                {
                    "ref": "d1",
                    "accounts": [{"account_no": "6222020000001234", "balance": "1.00", "currency": "USD"}],
                }
            ],
        },
        "invalid reply",
    ),
    ({"request_ref": "q-1", "status": "done", "results": []}, "exactly the subjects asked"),
    ({"request_ref": "q-1", "status": "done", "results": [{"ref": "d1"}, {"ref": "d1"}]}, "twice"),
    ({"request_ref": "q-9", "status": "done", "results": [{"ref": "d1"}]}, "another request"),
    ({"status": "done"}, "request_ref: Field required"),
    ([1, 2, 3], "invalid reply"),
]


@respx.mock
@pytest.mark.parametrize(("body", "reason"), BAD_REPLIES)
async def test_bad_replies_are_rejected_with_a_reason(bank: BankConnector, body: object, reason: str) -> None:
    respx.post(f"{BASE}/v1/queries").respond(json=body)
    with pytest.raises(InvalidReply) as caught:
        await bank.query(query())
    assert reason in str(caught.value)
    assert ID not in str(caught.value) and "6222020000001234" not in str(caught.value)


@respx.mock
@pytest.mark.parametrize(
    ("response", "reason"),
    [
        (
            httpx.Response(200, content=b"{not json", headers={"content-type": "application/json"}),
            "not valid JSON",
        ),
        (httpx.Response(200, text="<html>ok</html>"), "expected JSON"),
        (
            httpx.Response(200, content=b"x" * 5000, headers={"content-type": "application/json"}),
            "size limit",
        ),
        (httpx.Response(302, headers={"location": "https://evil.test/"}), "unexpected redirect"),
        (httpx.Response(403, json={"error": "forbidden", "detail": f"id {ID}"}), "refused (403): forbidden"),
    ],
)
async def test_bad_transport_shapes(bank: BankConnector, response: httpx.Response, reason: str) -> None:
    respx.post(f"{BASE}/v1/queries").mock(return_value=response)
    with pytest.raises(RejectedError) as caught:
        await bank.query(query())
    assert reason in str(caught.value)
    assert ID not in str(caught.value)


@respx.mock
async def test_transient_errors_are_retried_then_succeed(bank: BankConnector) -> None:
    route = respx.post(f"{BASE}/v1/queries")
    route.side_effect = [
        httpx.Response(503),
        httpx.Response(429, headers={"Retry-After": "0.01"}),
        httpx.Response(200, json=FOUND),
    ]
    reply = await bank.query(query())
    assert route.call_count == 3
    assert reply.results[0].status is SubjectStatus.FOUND


@respx.mock
async def test_retries_are_bounded_and_the_breaker_opens(bank: BankConnector) -> None:
    route = respx.post(f"{BASE}/v1/queries").mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(TransientError, match="timed out"):
        await bank.query(query())
    assert route.call_count == 3
    with pytest.raises(RegistryUnavailable, match="skipped"):
        await bank.query(query())
    assert route.call_count == 3, "an open breaker sends nothing"


@respx.mock
async def test_freeze_request_and_partial_reply(bank: BankConnector) -> None:
    route = respx.post(f"{BASE}/v1/freezes").respond(
        json={
            "key": "key-00000001",
            "result": "PARTIAL",
            "freeze_no": "F1",
            "frozen_amount": "40.00",
            "start": "2026-11-23",
            "end": "2027-11-22",
        }
    )
    reply = await bank.control(freeze())
    assert json.loads(route.calls.last.request.content) == {
        "key": "key-00000001",
        "case_no": "（2024）豫0185执1号",
        "ref": "d1",
        "account_no": "6222020000001234",
        "amount": "100.00",
        "term_years": 1,
    }
    assert (reply.outcome, reply.amount_fen, reply.registry_reference) == (ControlOutcome.PARTIAL, 4000, "F1")
    assert reply.expires_on == dt.date(2027, 11, 22)


@respx.mock
@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            {"key": "key-00000001", "result": "FROZEN", "frozen_amount": "1.00"},
            "needs its reference, start and end",
        ),
        (
            {
                "key": "key-00000001",
                "result": "FROZEN",
                "freeze_no": "F",
                "start": "2026-11-23",
                "end": "2025-01-01",
            },
            "the measure ends before it starts",
        ),
        (
            {
                "key": "key-00000001",
                "result": "QUEUED",
                "freeze_no": "F",
                "start": "2026-11-23",
                "end": "2027-11-22",
            },
            "needs its queue position",
        ),
        ({"key": "other-key", "result": "REJECTED"}, "another request"),
        ({"key": "key-00000001", "result": "MAYBE"}, "invalid reply"),
    ],
)
async def test_bad_control_replies(bank: BankConnector, body: dict[str, object], reason: str) -> None:
    sent = respx.post(f"{BASE}/v1/freezes").respond(json=body)
    status = respx.get(f"{BASE}/v1/requests/key-00000001").respond(404, json={"error": "unknown_key"})
    with pytest.raises(UnreadableAnswer, match=reason) as raised:
        await bank.control(freeze())
    assert (sent.call_count, status.call_count) == (2, 1), (
        "unreadable: ask the status, then resend the same key"
    )
    assert not is_refusal(raised.value), "an answer that cannot be read is an unknown outcome"


@respx.mock
async def test_a_lost_freeze_reply_is_resolved_by_status_never_resent(bank: BankConnector) -> None:
    sent = respx.post(f"{BASE}/v1/freezes").respond(502)
    status = respx.get(f"{BASE}/v1/requests/key-00000001").respond(
        json={
            "key": "key-00000001",
            "result": "FROZEN",
            "freeze_no": "F1",
            "frozen_amount": "100.00",
            "start": "2026-11-23",
            "end": "2027-11-22",
        }
    )
    reply = await bank.control(freeze())
    assert sent.call_count == 1, "a freeze whose reply was lost is never sent again"
    assert status.call_count == 1
    assert reply.outcome is ControlOutcome.EFFECTIVE


@respx.mock
async def test_a_freeze_the_bank_never_saw_is_sent_again_with_the_same_key(bank: BankConnector) -> None:
    sent = respx.post(f"{BASE}/v1/freezes")
    sent.side_effect = [
        httpx.Response(502),
        httpx.Response(200, json={"key": "key-00000001", "result": "REJECTED", "reason": "no_such_account"}),
    ]
    respx.get(f"{BASE}/v1/requests/key-00000001").respond(404, json={"error": "unknown_key"})
    reply = await bank.control(freeze())
    assert sent.call_count == 2
    assert {json.loads(c.request.content)["key"] for c in sent.calls} == {"key-00000001"}
    assert (reply.outcome, reply.reason) == (ControlOutcome.REFUSED, "no_such_account")


@respx.mock
async def test_unknown_outcome_when_status_cannot_be_had_either(bank: BankConnector) -> None:
    respx.post(f"{BASE}/v1/freezes").mock(side_effect=httpx.ReadTimeout("slow"))
    respx.get(f"{BASE}/v1/requests/key-00000001").respond(503)
    with pytest.raises(TransientError):
        await bank.control(freeze())


@respx.mock
async def test_connect_errors_and_429_on_a_freeze_are_retried(bank: BankConnector) -> None:
    sent = respx.post(f"{BASE}/v1/freezes")
    sent.side_effect = [
        httpx.ConnectError("refused"),
        httpx.Response(429),
        httpx.Response(
            200,
            json={
                "key": "key-00000001",
                "result": "FROZEN",
                "freeze_no": "F1",
                "frozen_amount": "100.00",
                "start": "2026-11-23",
                "end": "2027-11-22",
            },
        ),
    ]
    reply = await bank.control(freeze())
    assert sent.call_count == 3 and reply.outcome is ControlOutcome.EFFECTIVE


@respx.mock
async def test_partial_release_quotes_the_reference(bank: BankConnector) -> None:
    route = respx.post(f"{BASE}/v1/freezes/F1/releases").respond(
        json={
            "key": "rel-00000001",
            "result": "FROZEN",
            "freeze_no": "F1",
            "frozen_amount": "60.00",
            "start": "2026-11-23",
            "end": "2027-11-22",
        }
    )
    reply = await bank.release(
        ReleaseRequest(idempotency_key="rel-00000001", registry_reference="F1", amount_fen=4000)
    )
    assert json.loads(route.calls.last.request.content) == {"key": "rel-00000001", "amount": "40.00"}
    assert reply.amount_fen == 6000


def test_errors_pickle_and_carry_no_personal_data() -> None:
    for error in (
        TransientError("bank-a", "timed out", "q-1", retry_after=2.0),
        UnknownOutcome("bank-a", "lost", "k"),
        InvalidReply("bank-a", "invalid reply: balance", "q-1"),
    ):
        copy = pickle.loads(pickle.dumps(error))
        assert (type(copy), str(copy)) == (type(error), str(error))
    assert pickle.loads(pickle.dumps(TransientError("b", "r", None, 2.0))).retry_after == 2.0


async def test_concurrency_is_capped_per_registry() -> None:
    limits = ClientLimits(max_connections=2, requests_per_second=0)
    in_flight = peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return httpx.Response(200, json={"status": "ok"})

    client = RegistryClient("bank-a", BASE, SecretStr("t"), limits, transport=httpx.MockTransport(handler))
    await asyncio.gather(*(client.call("GET", "/v1/health", reference="h", safe=True) for _ in range(10)))
    await client.aclose()
    assert peak == 2


@respx.mock
async def test_garbage_in_reply_to_a_freeze_is_resolved_by_status(bank: BankConnector) -> None:
    sent = respx.post(f"{BASE}/v1/freezes").respond(
        200, content=b'{"key": 1', headers={"content-type": "application/json"}
    )
    respx.get(f"{BASE}/v1/requests/key-00000001").respond(
        json={
            "key": "key-00000001",
            "result": "FROZEN",
            "freeze_no": "F1",
            "frozen_amount": "100.00",
            "start": "2026-11-23",
            "end": "2027-11-22",
        }
    )
    reply = await bank.control(freeze())
    assert sent.call_count == 1
    assert reply.registry_reference == "F1"


# --- the deposit watch and a measure's state ----------------------------------------------------------


@respx.mock
async def test_balances_of_known_accounts(bank: BankConnector) -> None:
    route = respx.post(f"{BASE}/v1/balances").respond(
        json={
            "request_ref": "w-1",
            "accounts": [{"account_no": "62220001", "balance": "1500.25", "restrictions": []}],
        }
    )
    reports = await bank.balances("w-1", ["62220001", "62220002"])
    assert json.loads(route.calls.last.request.content) == {
        "request_ref": "w-1",
        "accounts": ["62220001", "62220002"],
    }
    assert [(r.identifier, r.balance_fen) for r in reports] == [("62220001", 150025)]


@respx.mock
@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"request_ref": "other", "accounts": []}, "reply names another request"),
        (
            {"request_ref": "w-1", "accounts": [{"account_no": "99990000", "balance": "1.00"}]},
            "an account that was not asked about",
        ),
        ({"request_ref": "w-1", "accounts": [{"account_no": "62220001", "balance": "-1"}]}, "balance"),
    ],
)
async def test_balances_reject_replies_that_do_not_fit(
    bank: BankConnector, body: dict[str, object], reason: str
) -> None:
    respx.post(f"{BASE}/v1/balances").respond(json=body)
    with pytest.raises(InvalidReply, match=reason):
        await bank.balances("w-1", ["62220001"])


def deposit_event(seq: int, amount: str = "300.00") -> dict[str, object]:
    return {
        "seq": seq,
        "account_no": "62220001",
        "amount": amount,
        "balance": "800.00",
        "at": "2026-11-23T08:00:00Z",
    }


@respx.mock
async def test_deposit_feed_is_read_after_the_cursor_with_a_long_poll(bank: BankConnector) -> None:
    route = respx.get(f"{BASE}/v1/deposits").respond(
        json={"events": [deposit_event(8), deposit_event(9)], "last": 9}
    )
    feed = await bank.deposits(7, 5)
    assert route.calls.last.request.url.params["after"] == "7"
    assert route.calls.last.request.url.params["wait"] == "5"
    assert [(e.seq, e.amount_fen, e.balance_fen) for e in feed.events] == [
        (8, 300_00, 800_00),
        (9, 300_00, 800_00),
    ]
    assert feed.last == 9
    assert "62220001" not in repr(feed)  # the account is masked in logs


@respx.mock
@pytest.mark.parametrize(
    "body",
    [
        {"events": [deposit_event(9), deposit_event(8)], "last": 9},  # out of order
        {"events": [deposit_event(7)], "last": 7},  # not after the cursor
        {"events": [deposit_event(8)], "last": 12},  # cursor beyond the last event
    ],
)
async def test_deposit_feed_out_of_order_is_invalid(bank: BankConnector, body: dict[str, object]) -> None:
    respx.get(f"{BASE}/v1/deposits").respond(json=body)
    with pytest.raises(InvalidReply, match="out of order"):
        await bank.deposits(7, 0)


@respx.mock
async def test_a_measure_state_now_by_its_reference(bank: BankConnector) -> None:
    respx.get(f"{BASE}/v1/freezes/F-9").respond(
        json={
            "key": "k" * 16,
            "result": "FROZEN",
            "freeze_no": "F-9",
            "frozen_amount": "80.00",
            "start": "2026-11-23",
            "end": "2027-11-22",
        }
    )
    reply = await bank.measure_state("F-9", "k" * 16)
    assert (reply.outcome, reply.amount_fen, reply.expires_on) == (
        ControlOutcome.EFFECTIVE,
        80_00,
        dt.date(2027, 11, 22),
    )
    respx.get(f"{BASE}/v1/freezes/F-9").respond(json={"key": "x" * 16, "result": "FROZEN"})
    with pytest.raises(UnreadableAnswer, match="another request"):
        await bank.measure_state("F-9", "k" * 16)


async def test_a_reply_that_drips_is_cut_off_at_the_whole_reply_deadline() -> None:
    """Each byte comes within the read timeout, the whole reply never: the call ends, named, in bounded time."""
    from starlette.applications import Starlette
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    from connectors.simulator.serve import serving_in_background

    async def drip(request: object) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            for _ in range(100):
                yield b" "
                await asyncio.sleep(0.1)

        return StreamingResponse(body(), media_type="application/json")

    limits = ClientLimits(
        timeout_s=0.5, whole_reply_factor=2, max_attempts=2, backoff_initial_s=0.01, requests_per_second=0
    )
    with serving_in_background(Starlette(routes=[Route("/v1/health", drip)])) as url:
        bank = BankConnector(RegistryClient("bank-a", url, SecretStr("tok-123"), limits))
        started = asyncio.get_running_loop().time()
        health = await bank.health()
        await bank.aclose()
    elapsed = asyncio.get_running_loop().time() - started
    assert not health.ok and health.detail == "reply not complete within 1 s"
    assert elapsed < 5, "two attempts of at most 1 s each, not the registry's 10 s"


@respx.mock
async def test_the_gate_is_awaited_before_every_attempt() -> None:
    """A limit shared with other processes (flows/limits.py) is asked before each request that goes out,
    retries included, and a gate that refuses stops the request before anything is sent."""
    gated: list[str] = []

    async def gate(code: str) -> None:
        gated.append(code)

    connector = BankConnector(mocked("bank-a", BASE, "tok-123", FAST, gate=gate))
    route = respx.post(f"{BASE}/v1/queries")
    route.side_effect = [httpx.Response(503), httpx.Response(200, json=FOUND)]
    await connector.query(query())
    assert gated == ["bank-a", "bank-a"] and route.call_count == 2

    class Missing(RuntimeError):
        pass

    async def missing(code: str) -> None:
        raise Missing(code)

    refused = BankConnector(mocked("bank-a", BASE, "tok-123", FAST, gate=missing))
    with pytest.raises(Missing):
        await refused.query(query())
    assert route.call_count == 2, "nothing was sent past a refusing gate"
    await connector.aclose()
    await refused.aclose()


@respx.mock
async def test_an_accounts_purpose_is_read_as_a_code_and_anything_else_is_refused(
    bank: BankConnector,
) -> None:
    """The purpose says whether the law protects the account (models.exemptions): a bank's code, never its
    free text (which could carry a name or a number)."""
    account = FOUND["results"][0]["accounts"][0]  # type: ignore[index]
    respx.post(f"{BASE}/v1/queries").respond(
        json=FOUND | {"results": [{"ref": "d1", "accounts": [account | {"purpose": "migrant_wage"}]}]}
    )
    ((asset,),) = [r.assets for r in (await bank.query(query())).results]
    assert asset.purpose == "migrant_wage"
    respx.post(f"{BASE}/v1/queries").respond(
        json=FOUND | {"results": [{"ref": "d1", "accounts": [account | {"purpose": f"张三 {ID}"}]}]}
    )
    with pytest.raises(InvalidReply) as caught:
        await bank.query(query())
    assert "purpose" in str(caught.value) and ID not in str(caught.value)
