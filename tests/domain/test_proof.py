"""The rules of proof (`models.proof`): what a code or a signature is bound to, how a typed code is read, when
codes stop being taken. Pure: no database."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from models import proof
from models.proof import Binding, Issued, Limits
from models.values import InvalidValue

NOW = dt.datetime(2026, 12, 7, 6, 0, tzinfo=dt.UTC)
BOUND = Binding("3f0c", "（2026）豫0185执1号", "王法官", True, 100_000)


def issued(code: str, binding: Binding = BOUND, *, used: bool = False, age_s: int = 0) -> Issued:
    salt = proof.new_salt()
    at = NOW - dt.timedelta(seconds=age_s)
    return Issued(1, binding, salt, proof.seal(code, salt), at, at + dt.timedelta(minutes=5), used)


def test_the_signed_message_names_every_bound_field_one_a_line() -> None:
    assert BOUND.message().decode() == (
        "query-clerk decision v1\nrun 3f0c\ncase （2026）豫0185执1号\nby 王法官\napprove 100000\n"
    )
    assert dataclasses.replace(BOUND, approve=False, amount_fen=0).message().endswith(b"\nreject\n")


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"run": "other"}, "another run"),
        ({"case_number": "（2026）豫0185执2号"}, "another case"),
        ({"person": "李法官"}, "another person"),
        ({"approve": False, "amount_fen": 0}, "an approval"),
        ({"amount_fen": 100_001}, "another amount (approve 1,000.00 yuan)"),
    ],
)
def test_a_code_opens_only_for_what_it_was_sent_for(change: dict[str, object], why: str) -> None:
    sent = issued("123456")
    assert proof.check_code("123456", BOUND, [sent], NOW) == (sent, None)
    other = dataclasses.replace(BOUND, **change)  # type: ignore[arg-type]
    found, refused = proof.check_code("123456", other, [sent], NOW)
    assert found is sent and refused == f"the code was sent for {why}, not for this decision"


def test_a_wrong_used_or_expired_code_is_refused_with_its_reason() -> None:
    assert proof.check_code("654321", BOUND, [issued("123456")], NOW) == (None, "wrong code")
    assert "used already" in str(proof.check_code("123456", BOUND, [issued("123456", used=True)], NOW)[1])
    assert "expired" in str(proof.check_code("123456", BOUND, [issued("123456", age_s=300)], NOW)[1])
    assert proof.check_code("123456", BOUND, [issued("123456", age_s=299)], NOW)[1] is None


@pytest.mark.parametrize("typed", ["123 456", "123-456", " 123456 "])
def test_a_code_may_be_typed_with_spaces_or_dashes(typed: str) -> None:
    assert proof.parse_code(typed) == "123456"


@pytest.mark.parametrize("typed", ["12345", "1234567", "12a456", "１２３４５６", ""])
def test_anything_else_is_refused_by_name_without_echoing_it(typed: str) -> None:
    with pytest.raises(InvalidValue) as raised:
        proof.parse_code(typed)
    assert str(raised.value) == "code: a code is the 6 digits of the SMS"


def test_codes_are_six_random_digits_and_sealed_apart() -> None:
    codes = {proof.new_code() for _ in range(200)}
    assert all(len(c) == 6 and c.isdigit() for c in codes) and len(codes) > 190
    a, b = proof.new_salt(), proof.new_salt()
    assert proof.seal("123456", a) != proof.seal("123456", b)


def test_too_many_wrong_codes_lock_the_run_or_the_person() -> None:
    limits = Limits(tries_per_run=5, tries_per_person=10, lockout_s=900)
    assert proof.locked(4, 9, limits) is None
    assert proof.locked(5, 5, limits) == "5 wrong codes for this decision: no code is taken for 15 min"
    assert proof.locked(0, 10, limits) == "10 wrong codes by this person: no code is taken for 15 min"


def test_a_signature_proves_exactly_the_decision_signed() -> None:
    key = Ed25519PrivateKey.generate()
    signature = proof.sign(key, BOUND)
    assert proof.check_signature(key.public_key(), BOUND, signature) is None
    for other in (dataclasses.replace(BOUND, amount_fen=100_001), dataclasses.replace(BOUND, run="x")):
        assert proof.check_signature(key.public_key(), other, signature) is not None
    assert proof.check_signature(Ed25519PrivateKey.generate().public_key(), BOUND, signature) is not None
    assert proof.check_signature(key.public_key(), BOUND, "%%%") is not None


def test_keys_are_read_as_pem_hex_or_base64_and_anything_else_is_refused_by_name() -> None:
    from cryptography.hazmat.primitives import serialization

    key = Ed25519PrivateKey.generate()
    public = key.public_key()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    import base64

    for text in (raw.hex(), base64.b64encode(raw).decode(), pem.decode()):
        assert proof.key_id(proof.public_key(text, "public_key")) == proof.key_id(public)
    with pytest.raises(InvalidValue, match="public_key: not an Ed25519 public key"):
        proof.public_key("nonsense", "public_key")
    with pytest.raises(InvalidValue, match="--key: not an Ed25519 private key"):
        proof.private_key("-----BEGIN nonsense", "--key")
