"""The legal rules query-clerk follows, as pure functions over plain values (money in integer fen).

Sources (see GLOSSARY.md): what is owed and the order payments are applied in (2014 interpretation on
delayed-performance interest, art. 1 and 4); the enforcement fee (诉讼费用交纳办法 art. 14); the cap on
measures (查扣冻规定 2020, art. 19); measure terms and renewal (民诉法解释 2022, art. 485).
No Prefect, HTTP or SQL here: callers bring the values and store the results.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

# --- what is owed -------------------------------------------------------------------------------------

#: Delayed-performance interest: 1.75 per 10,000 per day, kept as an exact fraction of 1,000,000.
DELAYED_RATE_PER_MILLION = 175
_MICRO = 1_000_000

#: Enforcement fee bands (upper bound in fen, rate in parts per 1,000) above the flat 50 yuan
#: that covers the first 10,000 yuan.
_FEE_FLAT_FEN = 50_00
_FEE_BANDS: tuple[tuple[int | None, int], ...] = (
    (10_000_00, 0),  # covered by the flat 50 yuan
    (500_000_00, 15),
    (5_000_000_00, 10),
    (10_000_000_00, 5),
    (None, 1),
)


def _round_half_up(numerator: int, denominator: int) -> int:
    return (2 * numerator + denominator) // (2 * denominator)


def enforcement_fee(judgment_debt_fen: int) -> int:
    """The enforcement application fee for a judgment debt: 50 yuan up to 10,000 yuan, then 1.5 % of the
    part to 500,000, 1 % to 5,000,000, 0.5 % to 10,000,000 and 0.1 % above; rounded to the fen."""
    if judgment_debt_fen < 0:
        raise ValueError("judgment debt must be non-negative")
    per_mille_fen = 0  # fee in fen x 1000
    lower = 0
    for upper, rate in _FEE_BANDS:
        top = judgment_debt_fen if upper is None else min(judgment_debt_fen, upper)
        if top > lower:
            per_mille_fen += (top - lower) * rate
        if upper is None or judgment_debt_fen <= upper:
            break
        lower = upper
    return _FEE_FLAT_FEN + _round_half_up(per_mille_fen, 1000)


@dataclass(frozen=True, slots=True)
class Debt:
    """What a judgment fixed for one case: the inputs to `owed_on`."""

    principal: int
    judgment_interest: int
    costs: int
    performance_due_on: dt.date


@dataclass(frozen=True, slots=True)
class Payment:
    paid_on: dt.date
    amount: int


@dataclass(frozen=True, slots=True)
class Owed:
    """What is owed on a date, in fen. `remaining` is what measures may cover (never negative)."""

    on: dt.date
    principal: int
    judgment_interest: int
    delayed_interest: int
    fee: int
    costs: int
    paid: int
    remaining: int
    days_late: int

    @property
    def total(self) -> int:
        return self.principal + self.judgment_interest + self.delayed_interest + self.fee + self.costs


def owed_on(debt: Debt, payments: Iterable[Payment], on: dt.date) -> Owed:
    """What the debtor owes on `on`, with payments made up to and including that day applied.

    Delayed-performance interest runs from the day after `performance_due_on` to `on`, at 1.75/10,000 per
    day on the unpaid principal (general interest excluded). A payment goes to the judgment debt first
    (judgment interest, then principal), then to the delayed interest accrued so far, then to the fee and
    costs. Interest is accrued exactly and rounded half up to the fen once, at the end.
    """
    if min(debt.principal, debt.judgment_interest, debt.costs) < 0:
        raise ValueError("debt amounts must be non-negative")
    unpaid_interest = debt.judgment_interest
    unpaid_principal = debt.principal
    delayed_micro = 0  # delayed interest accrued, in fen x 1e6
    paid = 0
    accrued_to = debt.performance_due_on

    def accrue(until: dt.date) -> None:
        nonlocal delayed_micro, accrued_to
        days = (until - accrued_to).days
        if days > 0:
            delayed_micro += unpaid_principal * DELAYED_RATE_PER_MILLION * days
            accrued_to = until

    # Only the order within the judgment debt changes the result: what is paid beyond it (to the delayed
    # interest, then the fee and costs) lowers `remaining` alike, whichever part it is booked to.
    for payment in sorted(payments, key=lambda p: p.paid_on):
        if payment.paid_on > on:
            break
        if payment.amount <= 0:
            raise ValueError("payments must be positive")
        accrue(payment.paid_on)
        paid += payment.amount
        to_interest = min(payment.amount, unpaid_interest)
        unpaid_interest -= to_interest
        unpaid_principal -= min(payment.amount - to_interest, unpaid_principal)
    accrue(on)

    delayed = _round_half_up(delayed_micro, _MICRO)
    fee = enforcement_fee(debt.principal + debt.judgment_interest)
    total = debt.principal + debt.judgment_interest + delayed + fee + debt.costs
    return Owed(
        on=on,
        principal=debt.principal,
        judgment_interest=debt.judgment_interest,
        delayed_interest=delayed,
        fee=fee,
        costs=debt.costs,
        paid=paid,
        remaining=max(total - paid, 0),
        days_late=max((on - debt.performance_due_on).days, 0),
    )


# --- the cap: allocating freezes and finding excess ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Holding:
    """A deposit a registry reported: `key` is the caller's handle (e.g. an asset id), `available` what
    can still be frozen there in fen."""

    key: int
    available: int


@dataclass(frozen=True, slots=True)
class Allocation:
    key: int
    amount: int


def allocate_freezes(
    remaining_owed: int, already_covered: int, holdings: Sequence[Holding]
) -> list[Allocation]:
    """How much to freeze where, so that what is covered never exceeds what is owed.

    `already_covered` counts every measure that is requested, effective or queued for the case (a request
    whose reply has not come may still take effect). Holdings are taken in the order given (the caller
    decides priority: e.g. largest balance first, to touch as few banks as possible); each gets at most its
    available balance. Holdings with nothing available are skipped.
    """
    if remaining_owed < 0 or already_covered < 0:
        raise ValueError("amounts must be non-negative")
    need = remaining_owed - already_covered
    result: list[Allocation] = []
    for holding in holdings:
        if need <= 0:
            break
        if holding.available <= 0:
            continue
        amount = min(need, holding.available)
        result.append(Allocation(holding.key, amount))
        need -= amount
    return result


@dataclass(frozen=True, slots=True)
class Covered:
    """A measure in force or pending, for the excess rule: `key` identifies it, `amount` is what it holds
    (or asks for, while pending), `placed_on` orders it."""

    key: int
    amount: int
    placed_on: dt.date


class ReleaseOrder(StrEnum):
    """Which measures an excess is taken from first (a setting)."""

    NEWEST = "newest"  # the last placed were the last needed (the default)
    OLDEST = "oldest"
    LARGEST = "largest"  # as few measures touched as possible
    SMALLEST = "smallest"  # as many measures released whole as possible


def _release_sort_key(order: ReleaseOrder) -> tuple[Callable[[Covered], tuple[object, ...]], bool]:
    return {
        ReleaseOrder.NEWEST: (lambda m: (m.placed_on, m.key), True),
        ReleaseOrder.OLDEST: (lambda m: (m.placed_on, m.key), False),
        ReleaseOrder.LARGEST: (lambda m: (m.amount, m.key), True),
        ReleaseOrder.SMALLEST: (lambda m: (m.amount, m.key), False),
    }[order]


def excess_releases(
    remaining_owed: int, measures: Sequence[Covered], order: ReleaseOrder = ReleaseOrder.NEWEST
) -> list[Allocation]:
    """Which measures to cut back, and by how much, so that what they cover is no more than what is owed.

    By default the most recently placed measures are cut first (they are the last to have been needed); a
    measure cut to zero is released whole. Returns (key, amount to release) pairs; empty when nothing is
    over the cap.
    """
    if remaining_owed < 0:
        raise ValueError("remaining owed must be non-negative")
    excess = sum(m.amount for m in measures) - remaining_owed
    releases: list[Allocation] = []
    key, reverse = _release_sort_key(order)
    for measure in sorted(measures, key=key, reverse=reverse):
        if excess <= 0:
            break
        cut = min(excess, measure.amount)
        if cut > 0:
            releases.append(Allocation(measure.key, cut))
            excess -= cut
    return releases


# --- deduction ---------------------------------------------------------------------------------------


def propose_deduction(remaining_owed: int, frozen: Sequence[Covered]) -> list[Allocation]:
    """What to move from frozen deposits to the court's case account: what they hold, up to what is owed,
    taken from the oldest freezes first (the first placed were the first to secure the debt)."""
    if remaining_owed < 0:
        raise ValueError("remaining owed must be non-negative")
    need = remaining_owed
    result: list[Allocation] = []
    for measure in sorted(frozen, key=lambda m: (m.placed_on, m.key)):
        if need <= 0:
            break
        amount = min(need, measure.amount)
        if amount > 0:
            result.append(Allocation(measure.key, amount))
            need -= amount
    return result


def split_approved(approved: int, proposal: Sequence[Allocation]) -> list[Allocation]:
    """A judge's approved amount spread over the proposal in its order. The judge may approve less than
    proposed, never more: more would take money the case is not owed or that is not frozen."""
    proposed = sum(a.amount for a in proposal)
    if approved <= 0:
        raise ValueError("the approved amount must be more than 0")
    if approved > proposed:
        raise ValueError(f"the approved amount may not exceed the {proposed} fen proposed")
    result: list[Allocation] = []
    left = approved
    for allocation in proposal:
        if left <= 0:
            break
        take = min(left, allocation.amount)
        result.append(Allocation(allocation.key, take))
        left -= take
    return result


# --- measure terms and renewal ------------------------------------------------------------------------


class AssetKind(StrEnum):
    DEPOSIT = "deposit"
    VEHICLE = "vehicle"
    REAL_ESTATE = "real_estate"


#: Longest term of one measure, in years (民诉法解释 2022, art. 485): deposits 1, movables 2, real estate
#: and other property rights 3. A renewal may be for up to the same term again.
TERM_YEARS: dict[AssetKind, int] = {
    AssetKind.DEPOSIT: 1,
    AssetKind.VEHICLE: 2,
    AssetKind.REAL_ESTATE: 3,
}

#: The least warning before a measure lapses that the rules allow a setting to give.
MIN_RENEWAL_LEAD_DAYS = 7


def _add_years(day: dt.date, years: int) -> dt.date:
    """The same day `years` later; a 29 February with no counterpart becomes the month's last day
    (民法典 art. 203)."""
    year = day.year + years
    last = calendar.monthrange(year, day.month)[1]
    return day.replace(year=year, day=min(day.day, last))


def measure_expiry(kind: AssetKind, starts_on: dt.date, years: int | None = None) -> dt.date:
    """The last day a measure is in effect, counted from the start date in the registry's reply.

    A one-year freeze from 2024-01-10 runs to 2025-01-09, as court notices write it ("自…起至…止"); this is
    the earlier of the two readings of the term, so renewals scheduled from it are never late.
    """
    limit = TERM_YEARS[kind]
    term = limit if years is None else years
    if not 1 <= term <= limit:
        raise ValueError(f"a {kind.value} measure lasts 1 to {limit} years, not {term}")
    return _add_years(starts_on, term) - dt.timedelta(days=1)


def renewal_due_on(expires_on: dt.date, lead_days: int) -> dt.date:
    """The day to renew a measure that lapses after `expires_on`: `lead_days` before it, at least 7."""
    if lead_days < MIN_RENEWAL_LEAD_DAYS:
        raise ValueError(f"renewal lead must be at least {MIN_RENEWAL_LEAD_DAYS} days, not {lead_days}")
    return expires_on - dt.timedelta(days=lead_days)


def renewal_expiry(kind: AssetKind, previous_expiry: dt.date, years: int | None = None) -> dt.date:
    """A renewal continues from the day after the previous expiry, for up to the same term."""
    return measure_expiry(kind, previous_expiry + dt.timedelta(days=1), years)


def is_lapsed(expires_on: dt.date, on: dt.date) -> bool:
    """A measure not renewed by its expiry has lapsed from the next day on and lost its queue place."""
    return on > expires_on
