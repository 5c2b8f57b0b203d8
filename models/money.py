"""Case money (案款), as the law and double-entry bookkeeping say, in plain Python: the journal's accounts and
entries, how money that reached a case is split, and how the court's bank and the journal are compared.

Sources (see GLOSSARY.md): 最高人民法院关于执行款物管理工作的规定 (法发〔2017〕6号): money deducted or
paid goes to the court's enforcement-money account, kept per case (一案一账号; 专项管理、独立核算、
专款专付); within 30 days it is accounted, the fees settled and the applicant paid (art. 10).
诉讼费用交纳办法 art. 14 and 20: the enforcement fee is borne by the debtor and taken first from what is
enforced; what is left beyond the debt is the debtor's.

The journal, as bookkeepers keep one:
- every entry has two or more legs, each an account and an amount in integer fen, and they sum to zero
  (a leg is a debit when positive, a credit when negative);
- nothing is changed or deleted: a mistake, a reversal, a return are entries of their own;
- a balance is the sum of an account's legs, derived, never stored.

Accounts (`Account`): `bank` is the money at the court's bank, per case sub-account (a case's id) or on the
master account (no case: money we could not place); the others are what that money is for: per case
`received` (arrived, not yet split), `fees` (the court's fee and costs), `applicant` (payable to the
applicant), `refundable` (the debtor's surplus), `escrow` (提存) and `paid_out`; for the bureau
`unidentified` (不明款) and `to_return` (to be sent back to its payer). The bank's side is a debit, what the
money is for a credit: a case's money is the credit balance of its accounts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum


class Account(StrEnum):
    BANK = "bank"
    RECEIVED = "received"
    FEES = "fees"
    APPLICANT = "applicant"
    REFUNDABLE = "refundable"
    ESCROW = "escrow"
    PAID_OUT = "paid_out"
    UNIDENTIFIED = "unidentified"
    TO_RETURN = "to_return"


#: Accounts of the bureau, never of one case.
BUREAU = frozenset({Account.UNIDENTIFIED, Account.TO_RETURN})


class Unbalanced(ValueError):
    """An entry whose legs do not sum to zero, or that has a leg of nothing or too few legs."""


@dataclass(frozen=True, slots=True)
class Leg:
    account: Account
    case_id: int | None  # the case (for `bank`: its sub-account), or None (the master account, the bureau)
    fen: int  # a debit when positive, a credit when negative

    def __post_init__(self) -> None:
        if self.account in BUREAU and self.case_id is not None:
            raise Unbalanced(f"{self.account} is the bureau's account, never a case's")
        if self.account not in BUREAU and self.account is not Account.BANK and self.case_id is None:
            raise Unbalanced(f"{self.account} is a case's account: it needs the case")


def entry(*legs: Leg) -> tuple[Leg, ...]:
    """Legs that make one entry of the journal: at least two, none of zero, one per account, summing to
    zero."""
    if len(legs) < 2:
        raise Unbalanced("an entry has at least two legs")
    if len({leg.account for leg in legs}) != len(legs):
        raise Unbalanced("an account has one leg in an entry")
    if any(leg.fen == 0 for leg in legs):
        raise Unbalanced("a leg of 0 fen moves nothing")
    total = sum(leg.fen for leg in legs)
    if total != 0:
        raise Unbalanced(f"the legs sum to {total} fen, not 0")
    return tuple(legs)


def reversal(legs: Iterable[Leg]) -> tuple[Leg, ...]:
    """The entry that undoes another: the same legs, each the other way."""
    return entry(*(Leg(leg.account, leg.case_id, -leg.fen) for leg in legs))


def arrived(bank_case: int | None, fen: int, case_id: int | None) -> tuple[Leg, ...]:
    """A credit on the court's bank: on the sub-account of `bank_case` (None: the master account), for the
    case `case_id` (None: money we cannot place, the bureau's unidentified money)."""
    if fen <= 0:
        raise Unbalanced("money arriving is more than 0 fen")
    to = Leg(Account.UNIDENTIFIED, None, -fen) if case_id is None else Leg(Account.RECEIVED, case_id, -fen)
    return entry(Leg(Account.BANK, bank_case, fen), to)


def assigned(fen: int, case_id: int) -> tuple[Leg, ...]:
    """Unidentified money a person placed with a case."""
    return entry(Leg(Account.UNIDENTIFIED, None, fen), Leg(Account.RECEIVED, case_id, -fen))


def to_return(fen: int) -> tuple[Leg, ...]:
    """Unidentified money a person decided to send back to whoever paid it."""
    return entry(Leg(Account.UNIDENTIFIED, None, fen), Leg(Account.TO_RETURN, None, -fen))


@dataclass(frozen=True, slots=True)
class Split:
    """What money that reached a case is for, by the law's order: the court's fee and costs first, then the
    applicant's debt, and what is left beyond it the debtor's."""

    fees: int
    applicant: int
    refundable: int

    @property
    def total(self) -> int:
        return self.fees + self.applicant + self.refundable


def split(fen: int, fees_due: int, applicant_due: int) -> Split:
    """Split `fen` that reached a case: `fees_due` is the fee and costs not yet taken from earlier money,
    `applicant_due` what the case still owes the applicant before this money (`models.rules.owed_on` orders
    the debt within: judgment interest, principal, then the delayed interest)."""
    if fen <= 0:
        raise ValueError("the money split is more than 0 fen")
    if fees_due < 0 or applicant_due < 0:
        raise ValueError("what is due is 0 fen or more")
    fees = min(fen, fees_due)
    applicant = min(fen - fees, applicant_due)
    return Split(fees, applicant, fen - fees - applicant)


def split_entry(case_id: int, parts: Split) -> tuple[Leg, ...]:
    """Money received by a case, split to what it is for."""
    legs = [Leg(Account.RECEIVED, case_id, parts.total)]
    for account, fen in (
        (Account.FEES, parts.fees),
        (Account.APPLICANT, parts.applicant),
        (Account.REFUNDABLE, parts.refundable),
    ):
        if fen:
            legs.append(Leg(account, case_id, -fen))
    return entry(*legs)


def balances(legs: Iterable[Leg]) -> dict[tuple[Account, int | None], int]:
    """Every account's balance (debits positive) over these legs; accounts at zero are left out."""
    totals: dict[tuple[Account, int | None], int] = {}
    for leg in legs:
        key = (leg.account, leg.case_id)
        totals[key] = totals.get(key, 0) + leg.fen
    return {key: fen for key, fen in totals.items() if fen}


@dataclass(frozen=True, slots=True)
class Difference:
    """A sub-account (or the master account, by its number) whose closing balance at the bank differs from
    the journal's."""

    subaccount: str
    bank_fen: int | None  # None: the bank does not list it
    journal_fen: int | None  # None: the journal does not know it

    @property
    def off_by(self) -> int:
        return (self.bank_fen or 0) - (self.journal_fen or 0)


def differences(bank: Mapping[str, int], journal: Mapping[str, int]) -> list[Difference]:
    """Each account whose balance at the bank and in the journal differ, by its number; an account the one
    side lists at zero and the other not at all agrees. Never an adjusting entry: a person looks."""
    found = []
    for number in sorted(set(bank) | set(journal)):
        at_bank, ours = bank.get(number), journal.get(number)
        if (at_bank or 0) != (ours or 0):
            found.append(Difference(number, at_bank, ours))
    return found
