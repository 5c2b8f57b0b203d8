"""Proof of who decides: a decision that moves money carries a one-time code sent to the deciding person's
phone, or a signature with the person's own Ed25519 key, each bound to what is decided (PSD2's "dynamic
linking"): the run that waits, the case, the person, approve or reject, and the amount. A code for
approving 1,000.00 yuan is void for 1,000.01, for a rejection, for another run or case.

Pure rules: no database, no HTTP. A code is kept only sealed (scrypt with a salt of its own: a 6-digit code
costs about 30 ms a guess to test, so reading the case book does not give it within its few minutes); the
code itself lives in the SMS and in the person's head, never in a log, an artifact or the audit trail.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from models.values import InvalidValue, format_yuan

PROOF_FORMAT = "query-clerk decision v1"
#: How a refusal that sent a code begins (`clerk approve` then asks for the code on a terminal).
CODE_SENT = "no proof: a code to"
CODE_DIGITS = 6
SALT_BYTES = 16
#: scrypt's cost: 16 MB and about 30 ms a try on one core, for the court and for a thief alike.
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


@dataclass(frozen=True, slots=True)
class Binding:
    """What a proof is bound to. `run`: the paused run that waits for the decision (any key naming the one
    decision); `amount_fen`: what is approved (0 for a rejection)."""

    run: str
    case_number: str
    person: str
    approve: bool
    amount_fen: int

    @classmethod
    def of(
        cls, run: str, case_number: str, person: str, approve: bool, amount_fen: int | None, proposed_fen: int
    ) -> Binding:
        """The binding of a decision as it is given: the amount it names, or all that was proposed when it
        names none; 0 for a rejection. The decision step and `clerk approve --key` both bind through this,
        so that a signature made at the command line is checked against the same bytes."""
        amount = (proposed_fen if amount_fen is None else amount_fen) if approve else 0
        return cls(run, case_number, person.strip(), approve, amount)

    def message(self) -> bytes:
        """The bytes a person signs: one field a line, UTF-8 (names and case numbers are Chinese)."""
        verdict = f"approve {self.amount_fen}" if self.approve else "reject"
        lines = (PROOF_FORMAT, f"run {self.run}", f"case {self.case_number}", f"by {self.person}", verdict)
        return ("\n".join(lines) + "\n").encode("utf-8")

    def words(self) -> str:
        """What the decision does, as the SMS and a refusal say it."""
        return f"approve {format_yuan(self.amount_fen)} yuan" if self.approve else "reject"

    def differs(self, other: Binding) -> str | None:
        """What of `other` this proof is not for (the first difference), or None."""
        if other.run != self.run:
            return "another run"
        if other.case_number != self.case_number:
            return "another case"
        if other.person != self.person:
            return "another person"
        if other.approve != self.approve:
            return "a rejection" if self.approve is False else "an approval"
        if other.amount_fen != self.amount_fen:
            return f"another amount ({self.words()})"
        return None


class Proven(StrEnum):
    CODE = "code"
    KEY = "key"


@dataclass(frozen=True, slots=True)
class Limits:
    """How long a code lives and how many wrong tries a run and a person get within `lockout_s`."""

    code_ttl_s: int = 300
    tries_per_run: int = 5
    tries_per_person: int = 10
    lockout_s: int = 900
    resend_after_s: int = 60

    @property
    def code_minutes(self) -> int:
        return max(self.code_ttl_s // 60, 1)

    @property
    def lockout_minutes(self) -> int:
        return max(self.lockout_s // 60, 1)


# --- codes ------------------------------------------------------------------------------------------------


def new_code() -> str:
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def new_salt() -> bytes:
    return secrets.token_bytes(SALT_BYTES)


def seal(code: str, salt: bytes) -> bytes:
    return hashlib.scrypt(code.encode("ascii"), salt=salt, **_SCRYPT)


def parse_code(value: str, field_name: str = "code") -> str:
    """A code as a person types it: 6 digits, spaces and dashes between them allowed."""
    digits = "".join(value.split()).replace("-", "")
    if len(digits) != CODE_DIGITS or not digits.isascii() or not digits.isdigit():
        raise InvalidValue(field_name, f"a code is the {CODE_DIGITS} digits of the SMS")
    return digits


@dataclass(frozen=True, slots=True)
class Issued:
    """A code as the case book keeps it: sealed, with what it is for."""

    id: int
    binding: Binding
    salt: bytes = field(repr=False)
    sealed: bytes = field(repr=False)
    issued_at: dt.datetime
    expires_at: dt.datetime
    used: bool = False
    tries: int = 0

    def live(self, now: dt.datetime) -> bool:
        return not self.used and now < self.expires_at


def check_code(
    code: str, binding: Binding, issued: Sequence[Issued], now: dt.datetime
) -> tuple[Issued | None, str | None]:
    """The issued code `code` opens and, when it may not prove this decision, why: replayed, expired, for
    another run, case, person, verdict or amount. (None, "wrong code") when it opens none."""
    for candidate in issued:
        if not hmac.compare_digest(seal(code, candidate.salt), candidate.sealed):
            continue
        if candidate.used:
            return candidate, "the code was used already (a code is good once)"
        other = candidate.binding.differs(binding)
        if other is not None:
            return candidate, f"the code was sent for {other}, not for this decision"
        if now >= candidate.expires_at:
            return candidate, "the code has expired: submit the decision without a code for a new one"
        return candidate, None
    return None, "wrong code"


def locked(run_tries: int, person_tries: int, limits: Limits) -> str | None:
    """Why no code is taken now (too many wrong tries within the lockout), or None."""
    minutes = limits.lockout_minutes
    if run_tries >= limits.tries_per_run:
        return f"{run_tries} wrong codes for this decision: no code is taken for {minutes} min"
    if person_tries >= limits.tries_per_person:
        return f"{person_tries} wrong codes by this person: no code is taken for {minutes} min"
    return None


# --- keys -------------------------------------------------------------------------------------------------


def public_key(text: str, field_name: str) -> Ed25519PublicKey:
    """A registered public key: PEM, or its 32 bytes in base64 or hex."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode("ascii"))
            if isinstance(key, Ed25519PublicKey):
                return key
            raise ValueError
        raw = bytes.fromhex(text) if len(text) == 64 else base64.b64decode(text, validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, binascii.Error, UnicodeEncodeError):
        raise InvalidValue(
            field_name, "not an Ed25519 public key (PEM, or its 32 bytes in base64 or hex)"
        ) from None


def private_key(text: str, field_name: str) -> Ed25519PrivateKey:
    """A person's own signing key: PEM (PKCS#8, unencrypted) or its 32 bytes in hex."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(text.encode("ascii"), password=None)
            if isinstance(key, Ed25519PrivateKey):
                return key
            raise ValueError
        return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(text))
    except (ValueError, TypeError, UnicodeEncodeError):
        raise InvalidValue(field_name, "not an Ed25519 private key (PEM, or 64 hex digits)") from None


def key_id(public: Ed25519PublicKey) -> str:
    """A public key's id: the first 16 hex digits of SHA-256 of its 32 bytes."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def sign(key: Ed25519PrivateKey, binding: Binding) -> str:
    return base64.b64encode(key.sign(binding.message())).decode("ascii")


def check_signature(public: Ed25519PublicKey, binding: Binding, signature: str) -> str | None:
    """Why `signature` does not prove this decision by the holder of `public`, or None."""
    try:
        raw = base64.b64decode(signature.strip(), validate=True)
        public.verify(raw, binding.message())
    except (binascii.Error, ValueError, InvalidSignature):
        return "the signature is not this person's for this run, case, decision and amount"
    return None
