"""Seeded fault injection shared by the simulators."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum


class Fault(StrEnum):
    NONE = "none"
    SLOW = "slow"  # answer after `slow_s` (longer than a client's timeout: a timeout)
    ERROR = "error"  # 503 before doing anything
    THROTTLE = "throttle"  # 429 with Retry-After before doing anything
    GARBAGE = "garbage"  # 200 with a body that is not what the API promises
    LATER = "later"  # "accepted": the answer is collected by a later call
    LOST = "lost"  # the request is applied, then the reply is lost (502)


#: What differs between two runs asking the same thing: the clerk's idempotency keys and request references
#: (hex, with a letter in them; an account or ID number has none).
_VOLATILE = re.compile(rb"(?<![0-9a-z])(?=[0-9a-f]*[a-f])[0-9a-f]{12,}(?![0-9a-z])")


def request_identity(method: str, path: str, body: bytes) -> bytes:
    """What a request asks (a digest), the same in two runs that ask the same thing in another order."""
    asked = _VOLATILE.sub(b"*", f"{method} {path} ".encode() + body)
    return hashlib.blake2b(asked, digest_size=16).digest()


@dataclass
class FaultPlan:
    """Rates (0-1) of each fault per request, drawn from a seeded generator. Given what a request asks
    (`request_identity`), the fault it meets depends on the seed, what it asks and how many times it was
    asked before, not on the order requests arrive in: a seeded world with concurrent clients meets the
    same faults run after run (the demo prints the same figures twice)."""

    seed: int = 0
    slow: float = 0.0
    error: float = 0.0
    throttle: float = 0.0
    garbage: float = 0.0
    later: float = 0.0
    lost: float = 0.0
    slow_s: float = 2.0
    retry_after_s: float = 0.05
    injected: Counter[Fault] = field(init=False, repr=False, default_factory=Counter)  # what was drawn
    _asked: Counter[bytes] = field(init=False, repr=False, default_factory=Counter)  # times each was asked

    def __post_init__(self) -> None:
        rates = [rate for _, rate in self.rates]
        if any(not 0 <= r <= 1 for r in rates) or sum(rates) > 1:
            raise ValueError("fault rates must be between 0 and 1 and add up to at most 1")

    @property
    def rates(self) -> tuple[tuple[Fault, float], ...]:
        """Each fault and its rate, in the order a draw meets them."""
        return (
            (Fault.SLOW, self.slow),
            (Fault.ERROR, self.error),
            (Fault.THROTTLE, self.throttle),
            (Fault.GARBAGE, self.garbage),
            (Fault.LATER, self.later),
            (Fault.LOST, self.lost),
        )

    @property
    def any(self) -> bool:
        """Whether any fault may be drawn at all."""
        return any(rate for _, rate in self.rates)

    def draw(self, allowed: frozenset[Fault], identity: bytes) -> Fault:
        """The fault a request meets, given what it asks (`request_identity`) and how often it was asked."""
        self._asked[identity] += 1
        digest = hashlib.blake2b(identity, key=str(self.seed).encode(), digest_size=8)
        digest.update(str(self._asked[identity]).encode())
        roll = int.from_bytes(digest.digest()) / 2**64
        for fault, rate in self.rates:
            if roll < rate:
                if fault not in allowed:
                    return Fault.NONE
                self.injected[fault] += 1
                return fault
            roll -= rate
        return Fault.NONE


@dataclass
class Hostile:
    """What a registry gets wrong, on purpose, every time (tests and `PUT /_sim/hostile`): the answers a
    careless or broken registry gives, which the clerk must catch rather than record.

    - `over_freeze`: a bank's system keys the amount asked this many times over and holds that much (as far
      as the balance allows), and says so.
    - `shared_reference`: every status answer (`GET` by key) says the measure is in force for 99,999,999.00
      under one freeze number shared by all.
    - `never_answers`: every query is "accepted, answer later", and collecting it says the same, for ever.
    - `duplicate_account`: a bank lists a subject's first account twice, the second time with another
      balance.
    - `echo_personal`: a bank puts the subject's ID number where the balance belongs.
    - `foreign_namespace`: the real-estate registry answers its properties in another XML namespace.
    - `names_other_account`, `names_other_case`: a bank freezes what it was asked to, but its answers name
      another account (the last digit off by one) or another case.
    - `silent_balances`: a bank's balance answers (`POST /v1/balances`) leave out each account's purpose
      and other authorities' measures, as a bank whose balance service knows balances only would.
    - `unreadable_amount`: a bank does what it is asked (freezes, renewals, releases, deductions), but every
      answer to them, and to the status of their keys and the state of a freeze, carries this where the
      amount belongs (a JSON value: "-5.00", "NaN", "1e30", "lots", or a number such as 1e30).
    - `repeat_entries`: the court's bank lists every entry it books twice, under one reference.
    """

    over_freeze: int = 1
    shared_reference: bool = False
    never_answers: bool = False
    duplicate_account: bool = False
    echo_personal: bool = False
    foreign_namespace: bool = False
    names_other_account: bool = False
    names_other_case: bool = False
    unreadable_amount: str | float | None = None
    silent_balances: bool = False
    repeat_entries: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.over_freeze <= 1000:
            raise ValueError("over_freeze must be between 1 and 1000")
