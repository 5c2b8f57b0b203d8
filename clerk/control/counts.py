"""What a control step did, in counts: the one type every step of control and of the lifecycle returns (a
plan, a send, a settle by key, a renewal, release or deduction run), so flows add them up and report them
the same way. Counts only: no personal data, so they may go into a flow's result and artifacts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from connectors.base import ControlOutcome, ControlReply
from models.status import MeasureStatus
from models.tallies import add_fields

#: How many cases short of what they owe a run's result names; the rest are counted only, so a sweep of a
#: province holds no more than these whatever it controls.
SHORT_NAMED = 200


class Planned(Protocol):
    """What a case's plan (`control.planning.Plan`) says that counts."""

    @property
    def case_number(self) -> str: ...
    @property
    def freeze_fen(self) -> int: ...
    @property
    def allowance_kept_fen(self) -> int: ...
    @property
    def protected_accounts(self) -> int: ...
    @property
    def short_fen(self) -> int: ...


@dataclass
class Counts:
    # Freezes and seizures (measures).
    cases: int = 0  # cases planned
    requested: int = 0  # measures written down and sent
    freeze_requested_fen: int = 0
    effective: int = 0
    frozen_fen: int = 0
    partial: int = 0
    queued: int = 0
    pending: int = 0  # answered "later": settled by key
    seized: int = 0
    short_cases: int = 0  # cases whose plan left part of what they owe uncovered
    excess_released: int = 0  # releases of what a registry held beyond what was asked (its error)
    allowance_kept_fen: int = 0  # left free on persons' deposits as their living allowance
    protected_accounts: int = 0  # deposits not frozen because the law protects their purpose
    # Renewals, releases and deductions (actions).
    planned: int = 0  # actions written down and sent
    done: int = 0
    expired: int = 0  # measures that lapsed
    amount_fen: int = 0  # released or deducted
    # Both.
    refused: int = 0
    unconfirmed: int = 0  # not confirmed now: settled by key in the collect run
    short: list[tuple[str, int]] = field(default_factory=list)  # (case number, fen), the first SHORT_NAMED
    #: Registry -> answers found invalid (flagged for a person) in this step, for the run's events.
    invalid_replies: dict[str, int] = field(default_factory=dict)

    def add(self, other: Counts) -> None:
        add_fields(self, other, skip=("short",))
        self.short.extend(other.short[: SHORT_NAMED - len(self.short)])

    def flagged(self, registries: Iterable[str]) -> None:
        """Count answers found invalid for the first time, one registry code each (the run's events)."""
        self.add_flags(Counter(registries))

    def add_flags(self, by_registry: Mapping[str, int]) -> None:
        """Add another step's count of answers found invalid, by registry."""
        for registry, n in by_registry.items():
            self.invalid_replies[registry] = self.invalid_replies.get(registry, 0) + n

    def note(self, plan: Planned) -> None:
        """Count a case's plan: what it asks to freeze, and whether it leaves the case short."""
        self.freeze_requested_fen += plan.freeze_fen
        self.allowance_kept_fen += plan.allowance_kept_fen
        self.protected_accounts += plan.protected_accounts
        if plan.short_fen:
            self.short_cases += 1
            if len(self.short) < SHORT_NAMED:
                self.short.append((plan.case_number, plan.short_fen))

    def count(self, status: str, reply: ControlReply, seizure: bool) -> None:
        """Count one recorded answer to a measure by the status it left the measure in."""
        if status == MeasureStatus.REQUESTED:  # answered "later": collected by its key
            self.pending += 1
        elif status == MeasureStatus.EFFECTIVE:
            self.effective += 1
            self.frozen_fen += reply.amount_fen or 0
            self.partial += reply.outcome is ControlOutcome.PARTIAL
            self.seized += seizure
        elif status == MeasureStatus.QUEUED:
            self.queued += 1
        elif status == MeasureStatus.FAILED:
            self.refused += 1
