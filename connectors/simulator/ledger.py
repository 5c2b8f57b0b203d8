"""The ledger every simulated registry keeps: what each subject holds, what others and we have placed on
it, and the first answer to every idempotency key. Wire formats live in the simulators; the rules of the
registry live here, once.

- A deposit freeze takes what other authorities' measures and our own earlier freezes leave of the balance:
  all of the amount asked (effective), part of it (partial), or nothing while another authority holds it
  (queued behind the earliest such measure).
- A seizure of real estate or a vehicle holds the whole item; another authority's seizure queues it.
- When another authority's measure is lifted (its term ends on the simulated clock), queued measures take
  effect in order; when a deposit lands, a partial freeze on that account tops up to what it asked.
- A partial release lowers what a freeze asks for (its claim): the bank no longer tops it up beyond that.
  A deduction moves held money out and lowers the claim alike; a claim cut to nothing is released.
- Every deposit that lands is an event in the bank's deposit feed (`deposits_after`), in order.
- A repeated idempotency key gets the first answer, whatever the request says the second time.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from models.rules import AssetKind, measure_expiry, renewal_expiry
from models.supervision import bureau_today

Result = Literal["effective", "partial", "queued", "refused", "released"]


@dataclass
class Restriction:
    """Another authority's measure."""

    authority: str
    amount_fen: int | None
    until: dt.date


@dataclass
class Holding:
    identifier: str
    owner_id: str
    kind: AssetKind
    balance_fen: int | None = None  # deposits
    _: dataclasses.KW_ONLY
    description: str = ""  # real estate: location and area; vehicles: make and plate type
    restrictions: list[Restriction] = field(default_factory=list)
    purpose: str | None = None  # deposits: the account's type as the bank names it (e.g. migrant_wage)


@dataclass
class Measure:
    number: str
    key: str
    case_no: str
    identifier: str
    requested_fen: int | None
    held_fen: int | None
    status: Literal["effective", "queued", "released"]
    start: dt.date
    end: dt.date
    years: int = 1
    queue_no: int | None = None


@dataclass(frozen=True)
class Outcome:
    key: str
    result: Result
    measure: Measure | None = None
    ahead: Restriction | None = None
    reason: str | None = None
    deducted_fen: int | None = None  # set on the answer to a deduction


@dataclass
class Deposit:
    at: dt.datetime
    identifier: str
    amount_fen: int


@dataclass(frozen=True)
class DepositEvent:
    """A deposit that landed, as the bank's push feed reports it."""

    seq: int
    identifier: str
    amount_fen: int
    balance_fen: int
    at: dt.datetime


class Ledger:
    def __init__(self, code: str, today: dt.date) -> None:
        self.code = code
        self.today = today
        self.holdings: dict[str, Holding] = {}
        self.by_owner: dict[str, list[Holding]] = {}
        self.measures: dict[str, Measure] = {}
        self.on_asset: dict[str, list[Measure]] = {}  # each asset's measures, oldest first
        self.answers: dict[str, Outcome] = {}
        self.deducted: list[tuple[str, int]] = []
        # Where deducted money goes: the court's bank, when one is simulated (its `receive`), called with
        # the account credited, the amount, the deduction's key and the debtor's account.
        self.clearing: Callable[[str, int, str, str], None] | None = None
        self.scheduled_deposits: list[Deposit] = []
        self.deposit_events: list[DepositEvent] = []
        self._numbers = itertools.count(1)
        self._lapsed_until: dt.date | None = None  # the day whose lapsed measures were last lifted

    # --- set-up ---

    def add(self, holding: Holding) -> Holding:
        self.holdings[holding.identifier] = holding
        self.by_owner.setdefault(holding.owner_id, []).append(holding)
        return holding

    def holdings_of(self, owner_id: str) -> list[Holding]:
        return self.by_owner.get(owner_id, [])

    def forget_owner(self, owner_id: str) -> None:
        """The owner holds nothing here any more (tests: a debtor with no assets)."""
        for holding in self.by_owner.pop(owner_id, []):
            del self.holdings[holding.identifier]

    # --- control ---

    def answer(self, key: str) -> Outcome | None:
        return self.answers.get(key)

    def _remember(self, outcome: Outcome) -> Outcome:
        """Keep the first answer to a key as it was then: later changes to the measure do not alter it."""
        if outcome.measure is not None:
            outcome = dataclasses.replace(outcome, measure=dataclasses.replace(outcome.measure))
        return self.answers.setdefault(outcome.key, outcome)

    def place(self, key: str, case_no: str, identifier: str, amount_fen: int | None, years: int) -> Outcome:
        if key in self.answers:
            return self.answers[key]
        holding = self.holdings.get(identifier)
        if holding is None:
            return self._remember(Outcome(key, "refused", reason="no_such_asset"))
        if (holding.kind is AssetKind.DEPOSIT) != (amount_fen is not None):
            return self._remember(Outcome(key, "refused", reason="wrong_measure_kind"))
        number = f"{self.code}-{next(self._numbers):07d}"
        end = measure_expiry(holding.kind, self.today, years)
        others = self._others_in_force(holding)
        if holding.kind is AssetKind.DEPOSIT:
            assert amount_fen is not None
            assert holding.balance_fen is not None
            taken = sum(r.amount_fen or holding.balance_fen for r in others)
            free = max(holding.balance_fen - taken - self._ours(identifier), 0)
            if free > 0 or not others:
                held = min(amount_fen, free)
                measure = Measure(
                    number, key, case_no, identifier, amount_fen, held, "effective", self.today, end, years
                )
                self._add(measure)
                return self._remember(Outcome(key, "effective" if held == amount_fen else "partial", measure))
        elif not others:
            measure = Measure(
                number, key, case_no, identifier, None, None, "effective", self.today, end, years
            )
            self._add(measure)
            return self._remember(Outcome(key, "effective", measure))
        waiting = sum(1 for m in self.on_asset.get(identifier, ()) if m.status == "queued")
        held_zero = 0 if amount_fen is not None else None
        measure = Measure(
            number,
            key,
            case_no,
            identifier,
            amount_fen,
            held_zero,
            "queued",
            self.today,
            end,
            years,
            queue_no=len(others) + waiting + 1,
        )
        self._add(measure)
        ahead = min(others, key=lambda r: r.until)
        return self._remember(Outcome(key, "queued", measure, ahead=ahead))

    def renew(self, key: str, number: str, years: int) -> Outcome | None:
        """None when there is no such measure in force (the simulator answers 404)."""
        if key in self.answers:
            return self.answers[key]
        measure = self.measures.get(number)
        if measure is None or measure.status == "released" or measure.end < self.today:
            return None
        kind = self.holdings[measure.identifier].kind
        measure.end, measure.years = renewal_expiry(kind, measure.end, years), years
        return self._remember(Outcome(key, _state(measure), measure))

    def release(self, key: str, number: str, amount_fen: int | None) -> Outcome | None:
        if key in self.answers:
            return self.answers[key]
        measure = self.measures.get(number)
        if measure is None or measure.status == "released":
            return None
        claim = measure.requested_fen
        if amount_fen is None or claim is None or amount_fen >= claim:
            measure.status = "released"
            measure.held_fen = 0 if measure.held_fen is not None else None
            self._promote(measure.identifier)
        else:
            measure.requested_fen = claim - amount_fen
            measure.held_fen = min(measure.held_fen or 0, measure.requested_fen)
        return self._remember(Outcome(key, _state(measure), measure))

    def deduct(self, key: str, number: str, amount_fen: int, to: str | None = None) -> Outcome | None:
        """Move frozen money to the court's account `to` (once per key)."""
        if key in self.answers:
            return self.answers[key]
        measure = self.measures.get(number)
        if measure is None or measure.status != "effective" or measure.held_fen is None:
            return None
        if amount_fen > measure.held_fen:
            return None
        holding = self.holdings[measure.identifier]
        assert holding.balance_fen is not None
        measure.held_fen -= amount_fen
        measure.requested_fen = max((measure.requested_fen or 0) - amount_fen, 0)
        if measure.requested_fen == 0:
            measure.status = "released"
        holding.balance_fen -= amount_fen
        self.deducted.append((number, amount_fen))
        if self.clearing is not None and to is not None:
            self.clearing(to, amount_fen, key, holding.identifier)
        return self._remember(Outcome(key, "effective", measure, deducted_fen=amount_fen))

    # --- the clock ---

    def schedule_deposit(self, at: dt.datetime, identifier: str, amount_fen: int) -> None:
        # In time order, after those due at the same moment; one insertion, not a sort of the whole list
        # per deposit (that made a 1,000,000-debtor world take minutes to build).
        bisect.insort_right(self.scheduled_deposits, Deposit(at, identifier, amount_fen), key=_deposit_time)

    def advance(self, now: dt.datetime) -> None:
        """Move the clock: deposits due land, other authorities' lapsed measures are lifted."""
        while self.scheduled_deposits and self.scheduled_deposits[0].at <= now:
            deposit = self.scheduled_deposits.pop(0)
            self.deposit(deposit.identifier, deposit.amount_fen, deposit.at)
        self.today = max(self.today, bureau_today(now))
        if self._lapsed_until == self.today:
            return  # measures lapse by the day: walking every holding each tick cost half a core at 1,000,000
        self._lapsed_until = self.today
        for holding in self.holdings.values():
            before = len(holding.restrictions)
            holding.restrictions = [r for r in holding.restrictions if r.until >= self.today]
            if len(holding.restrictions) != before:
                self._promote(holding.identifier)

    def deposit(self, identifier: str, amount_fen: int, at: dt.datetime) -> DepositEvent | None:
        """Money lands on an account now: partial freezes top up, and the feed reports it."""
        holding = self.holdings.get(identifier)
        if holding is None or holding.balance_fen is None or amount_fen <= 0:
            return None
        holding.balance_fen += amount_fen
        self._top_up(holding)
        event = DepositEvent(len(self.deposit_events) + 1, identifier, amount_fen, holding.balance_fen, at)
        self.deposit_events.append(event)
        return event

    def deposits_after(self, seq: int, limit: int = 500) -> list[DepositEvent]:
        return self.deposit_events[seq : seq + limit]

    def current(self, number: str) -> Outcome | None:
        """The measure's state now (not the first answer to its key): queued ones may have taken effect,
        partial ones topped up."""
        measure = self.measures.get(number)
        if measure is None:
            return None
        return Outcome(measure.key, _state(measure), dataclasses.replace(measure))

    # --- inside ---

    def _others_in_force(self, holding: Holding) -> list[Restriction]:
        return [r for r in holding.restrictions if r.until >= self.today]

    def _add(self, measure: Measure) -> None:
        self.measures[measure.number] = measure
        self.on_asset.setdefault(measure.identifier, []).append(measure)

    def _ours(self, identifier: str) -> int:
        return sum(m.held_fen or 0 for m in self.on_asset.get(identifier, ()) if m.status == "effective")

    def _promote(self, identifier: str) -> None:
        """Queued measures move up; the first takes effect once nothing of another authority is ahead."""
        holding = self.holdings[identifier]
        queued = sorted(
            (m for m in self.on_asset.get(identifier, ()) if m.status == "queued"),
            key=lambda m: m.queue_no or 0,
        )
        others = len(self._others_in_force(holding))
        for position, measure in enumerate(queued, start=others + 1):
            measure.queue_no = position
        if others == 0 and queued:
            first = queued[0]
            first.status, first.queue_no, first.start = "effective", None, self.today
            first.end = measure_expiry(holding.kind, self.today, first.years)
            if holding.kind is AssetKind.DEPOSIT:
                first.held_fen = 0
                self._top_up(holding)
            for position, measure in enumerate(queued[1:], start=1):
                measure.queue_no = position

    def _top_up(self, holding: Holding) -> None:
        """New money on an account goes first to our freezes that hold less than they asked."""
        if holding.balance_fen is None or self._others_in_force(holding):
            return
        free = holding.balance_fen - self._ours(holding.identifier)
        for measure in self.on_asset.get(holding.identifier, ()):  # oldest first
            if free <= 0:
                break
            if measure.status != "effective":
                continue
            short = (measure.requested_fen or 0) - (measure.held_fen or 0)
            if short > 0:
                add = min(short, free)
                measure.held_fen = (measure.held_fen or 0) + add
                free -= add


def _state(measure: Measure) -> Result:
    return (
        "released"
        if measure.status == "released"
        else "queued"
        if measure.status == "queued"
        else "effective"
    )


def _deposit_time(deposit: Deposit) -> dt.datetime:
    return deposit.at
