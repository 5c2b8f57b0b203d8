"""Fuzzing (hypothesis) of what takes outside input: the validators of case files and CLI arguments, and
the registries' reply parsers. Whatever the input, the answer is a value or the module's own error (with the
field named); never another exception, never a value that breaks the rules."""

from __future__ import annotations

import contextlib
import json
import string
from collections.abc import Callable
from typing import TypeVar

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from connectors.adapter import HttpConnector
from connectors.bank import BankConnector
from connectors.base import InvalidReply, RejectedError
from connectors.http import ClientLimits, RegistryClient
from connectors.property import PropertyConnector
from connectors.vehicle import VehicleConnector
from models.values import (
    CaseNumber,
    InvalidValue,
    parse_credit_code,
    parse_date,
    parse_resident_id,
    parse_yuan,
)

T = TypeVar("T")
ALPHABET = string.printable + "（）()豫京执恢号0185１２３４５６７８９０X¥,.-+=" + "\x00\u202e"
texts = st.text(alphabet=ALPHABET, max_size=40)
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def attempt(parse: Callable[[], T]) -> T | InvalidValue:
    """The value, or the validator's own error; anything else escapes and fails the test."""
    try:
        return parse()
    except InvalidValue as exc:
        return exc


@FUZZ
@given(texts)
def test_case_numbers(text: str) -> None:
    number = attempt(lambda: CaseNumber.parse(text))
    if isinstance(number, InvalidValue):
        assert number.field == "case_number"
    else:
        assert CaseNumber.parse(str(number)) == number  # what it stores parses back to itself


@FUZZ
@given(st.one_of(texts, st.from_regex(r"[0-9]{17}[0-9X]", fullmatch=True)))
def test_resident_ids(text: str) -> None:
    value = attempt(lambda: parse_resident_id(text))
    if isinstance(value, InvalidValue):
        assert value.field == "debtor_id"
        assert len(text) < 8 or text not in str(value), "an ID is never echoed in an error"
    else:
        assert len(value) == 18


@FUZZ
@given(st.one_of(texts, st.from_regex(r"[0-9A-HJ-NP-RTUWXY]{18}", fullmatch=True)))
def test_credit_codes(text: str) -> None:
    value = attempt(lambda: parse_credit_code(text))
    assert value.field == "debtor_id" if isinstance(value, InvalidValue) else len(value) == 18


@FUZZ
@given(st.one_of(texts, st.decimals(allow_nan=True, allow_infinity=True), st.integers()))
def test_amounts(value: object) -> None:
    fen = attempt(lambda: parse_yuan(value, "amount"))  # type: ignore[arg-type]
    assert fen.field == "amount" if isinstance(fen, InvalidValue) else isinstance(fen, int) and fen >= 0


@FUZZ
@given(texts)
def test_dates(text: str) -> None:
    day = attempt(lambda: parse_date(text, "filed_on"))
    assert day.field == "filed_on" if isinstance(day, InvalidValue) else day is not None


# --- replies --------------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=25,
)
# Replies that look like the real ones, with their fields replaced by anything.
bank_like = st.fixed_dictionaries(
    {
        "request_ref": st.one_of(st.just("q-1"), json_values),
        "status": st.sampled_from(["done", "accepted", 7]),
    },
    optional={
        "results": st.lists(
            st.fixed_dictionaries(
                {"ref": st.one_of(st.just("d1"), json_values)},
                optional={
                    "accounts": st.lists(
                        st.fixed_dictionaries(
                            {"account_no": json_values | st.just("62220001"), "balance": json_values | texts}
                        ),
                        max_size=3,
                    )
                },
            ),
            max_size=3,
        )
    },
)


def connector(kind: type[HttpConnector]) -> HttpConnector:
    return kind(RegistryClient("fuzz", "https://registry.test", SecretStr("t"), ClientLimits()))


def response(body: bytes, media: str) -> httpx.Response:
    return httpx.Response(
        200,
        content=body,
        headers={"content-type": media},
        request=httpx.Request("GET", "https://registry.test/"),
    )


@pytest.mark.minutes
@FUZZ
@given(st.one_of(json_values, bank_like))
def test_bank_replies(body: object) -> None:
    bank = connector(BankConnector)
    raw = json.dumps(body).encode()
    for parse in (
        lambda: bank._query_reply(response(raw, "application/json"), "q-1", {"d1"}),  # type: ignore[attr-defined]
        lambda: bank.control_reply(response(raw, "application/json"), "k" * 16),
    ):
        with contextlib.suppress(RejectedError):  # an invalid reply, named; nothing else
            parse()


@pytest.mark.minutes
@FUZZ
@given(st.one_of(st.binary(max_size=200), texts.map(str.encode)))
def test_xml_and_json_replies_from_bytes(body: bytes) -> None:
    for kind, media in ((PropertyConnector, "application/xml"), (VehicleConnector, "application/json"),
                        (BankConnector, "application/json")):  # fmt: skip
        registry = connector(kind)
        parse = registry._reply if isinstance(registry, VehicleConnector) else registry._query_reply  # type: ignore[attr-defined]
        with contextlib.suppress(InvalidReply):
            parse(response(body, media), "q-1", {"d1"})
        with contextlib.suppress(InvalidReply):
            registry.control_reply(response(body, media), "k" * 16)


@FUZZ
@given(
    st.builds(
        lambda tag, inner: f"<{tag} ref='q-1'>{inner}</{tag}>".encode(),
        st.sampled_from(["QueryResponse", "SeizureResponse", "Error", "x"]),
        st.text(alphabet="<>/=\"' abcSubjectPropertyrefcertNo0123.&;!DOCTYPE[]", max_size=80),
    )
)
def test_xml_fragments(body: bytes) -> None:
    registry = connector(PropertyConnector)
    for parse in (
        lambda: registry._query_reply(response(body, "application/xml"), "q-1", {"d1"}),  # type: ignore[attr-defined]
        lambda: registry.control_reply(response(body, "application/xml"), "k" * 16),
    ):
        with contextlib.suppress(InvalidReply):
            parse()
