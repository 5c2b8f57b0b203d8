"""What may never be frozen: the other half of the cap (查扣冻规定 2020, art. 3).

- **Living allowance** (生活必需费用): a natural-person debtor keeps what the debtor and dependants need to
  live on, "当地有最低生活保障标准的,必需的生活费用依照该标准确定": the local minimum living standard (低保) ×
  months × (1 + dependants). It is left unfrozen across all of the person's deposits together, never per
  account. Organisations get none.
- **Protected accounts**: an account whose purpose a law or judicial interpretation exempts (the reviewed
  list is a setting, each purpose with its source) is never frozen automatically.
- A judge may override either for one case, with a reason (audited by the caller).

No Prefect, HTTP or SQL here: callers bring the values and store the results.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Protocol

from models.rules import Holding


@dataclass(frozen=True, slots=True)
class LivingStandard:
    """A local minimum living standard: `region` is a court code or its start (the province word, e.g.
    "豫", or "豫01"), the most specific match wins; it applies from `since` until a later figure for the
    same region."""

    region: str
    monthly_fen: int
    since: dt.date

    def __post_init__(self) -> None:
        if not self.region:
            raise ValueError("region: a living standard names its region (a court code or its start)")
        if self.monthly_fen <= 0:
            raise ValueError("monthly_fen: a living standard is more than 0")


@dataclass(frozen=True, slots=True)
class Exemptions:
    """The settings of this module's rules: the local living standards, how many months of them a person
    keeps, and the account purposes the law protects."""

    standards: tuple[LivingStandard, ...] = ()
    months: int = 0
    protected: frozenset[str] = frozenset()

    def allowance(self, court_code: str, on: dt.date, dependants: int | None) -> int:
        """What a natural person keeps at this court on this day."""
        return living_allowance(standard_for(self.standards, court_code, on), self.months, dependants)

    def protects(self, kind: str, purpose: str | None) -> bool:
        """Whether an asset is left alone for its purpose (a deposit whose purpose the law exempts): the one
        test the freeze, the deduction, the watch and the case sheet apply, so that they agree."""
        return kind == "deposit" and purpose is not None and purpose in self.protected

    def for_case(self, *, allowance_overridden: bool, protected_overridden: bool) -> Exemptions:
        """These rules as they apply to one case once a judge has overridden either for it: an overridden
        allowance keeps nothing, an overridden protection protects no purpose."""
        return replace(
            self,
            months=0 if allowance_overridden else self.months,
            protected=frozenset() if protected_overridden else self.protected,
        )


#: No exemptions: what callers that bring no settings get (the rules off).
NO_EXEMPTIONS = Exemptions()


def standard_for(standards: Iterable[LivingStandard], court_code: str, on: dt.date) -> int | None:
    """The monthly standard that applies at `court_code` on `on`: the longest matching region's latest
    figure from before `on`; None when no region matches."""
    best: LivingStandard | None = None
    for s in standards:
        if not court_code.startswith(s.region) or s.since > on:
            continue
        if best is None or (len(s.region), s.since) > (len(best.region), best.since):
            best = s
    return None if best is None else best.monthly_fen


def living_allowance(monthly_fen: int | None, months: int, dependants: int | None) -> int:
    """What a natural person keeps: the standard × months × (1 + dependants); dependants unknown count as
    none; no standard for the region leaves nothing (the judge decides, and the case sheet says so)."""
    if monthly_fen is None or months <= 0:
        return 0
    return monthly_fen * months * (1 + max(dependants or 0, 0))


def within_allowance(holdings: Sequence[Holding], allowance: int) -> list[Holding]:
    """One person's deposits with what may still be frozen on each, so that at least `allowance` stays
    free across all of them together (what is free now is the sum of their `available`). Taken in the order
    given: the first deposits keep their room, the last ones give it up to the allowance."""
    return _take(holdings, sum(max(h.available, 0) for h in holdings) - max(allowance, 0))


def deductible(
    frozen: Sequence[Holding], balance: int, allowance: int, held_elsewhere: int = 0
) -> list[Holding]:
    """What may move from one person's frozen deposits (`frozen`: this case's freezes, `available` what each
    holds) so that the allowance still stays with the person: at most `balance` (all the person's deposits,
    as last reported) − `allowance` − `held_elsewhere` (what the person's deposits hold for other cases)
    in all, taken in the order given. The freeze kept the allowance when it was placed; this checks it
    again on the day the money moves (the standard, the dependants or the balances may have changed)."""
    return _take(frozen, balance - max(allowance, 0) - max(held_elsewhere, 0))


@dataclass(frozen=True, slots=True)
class Deposit:
    """One deposit of a case's debtor as the rule reckons it: `free`, its balance less what other
    authorities hold on it; `held`, what our own holds already take of it that the caller counts as gone
    (planning: all our live holds; the deduction and the case sheet: our holds for other cases)."""

    key: int
    debtor: int
    free: int
    held: int = 0
    purpose: str | None = None


@dataclass(frozen=True)
class Room:
    """What the law leaves a case on its debtors' deposits (`room_for`): the protected deposits, each
    other deposit's room (free less held), and per debtor the room in all, the allowance the law keeps
    and what of it the deposits hold (`kept`), and what the case may hold in all (`holdable`)."""

    protected: frozenset[int]
    room: Mapping[int, int]
    allowance: Mapping[int, int]
    kept: Mapping[int, int]
    holdable: Mapping[int, int]

    def take(self, debtor: int, holdings: Sequence[Holding]) -> list[Holding]:
        """`holdings` on the debtor's deposits (new freezes, in the order to place them, or this case's
        freezes, in the order money moves) cut so that together they take at most what the debtor's
        deposits hold beyond the allowance: the first keep theirs, the last give it up."""
        if debtor not in self.allowance:
            return list(holdings)
        return _take(holdings, self.holdable.get(debtor, 0))


class CaseTerms(Protocol):
    """What of a case the rule reads: its court (for the local standard) and a judge's overrides."""

    @property
    def court_code(self) -> str: ...
    @property
    def override_allowance(self) -> bool: ...
    @property
    def override_protected(self) -> bool: ...


def room_for(
    exempt: Exemptions,
    case: CaseTerms,
    on: dt.date,
    deposits: Sequence[Deposit],
    people: Mapping[int, int | None],
) -> Room:
    """The one reckoning of 查扣冻规定 art. 3 for one case, which the freeze, the deduction and the case sheet
    all take: a deposit whose purpose the law protects is left alone; every natural person (`people`: the
    case's natural-person debtors and their dependants) keeps the living allowance across all of the
    person's other deposits together; a judge's override for the case lifts either."""
    exempt = exempt.for_case(
        allowance_overridden=case.override_allowance, protected_overridden=case.override_protected
    )
    protected = frozenset(d.key for d in deposits if exempt.protects("deposit", d.purpose))
    room = {d.key: max(d.free - d.held, 0) for d in deposits if d.key not in protected}
    total: dict[int, int] = {}
    for d in deposits:
        if d.key not in protected:
            total[d.debtor] = total.get(d.debtor, 0) + room[d.key]
    allowance = {
        person: exempt.allowance(case.court_code, on, dependants)
        for person, dependants in people.items()
        if exempt.months > 0
    }
    kept = {person: min(amount, total.get(person, 0)) for person, amount in allowance.items()}
    holdable = {debtor: amount - kept.get(debtor, 0) for debtor, amount in total.items()}
    return Room(protected, room, allowance, kept, holdable)


def _take(holdings: Sequence[Holding], room: int) -> list[Holding]:
    room = max(room, 0)
    result = []
    for h in holdings:
        take = min(max(h.available, 0), room)
        result.append(Holding(h.key, take))
        room -= take
    return result


class Exemption(StrEnum):
    """What a judge may override for one case."""

    ALLOWANCE = "allowance"  # the living allowance
    PROTECTED = "protected"  # protected account purposes


class LeftFree(StrEnum):
    """Why an amount or an account was left free, in words for the case sheet."""

    ALLOWANCE = "kept as the debtor's living allowance"
    NO_DEPOSITS = "the debtor's living allowance, to keep once deposits are found (none yet)"
    PROTECTED = "the account's purpose is protected by law"
