"""A case sheet: what a judge reads of one case after a query (or of the plan, in a dry run).

The case's standing (owed today with its breakdown, what our freezes claim, what they hold, what no freeze
covers yet), then every asset found: registry, masked account or property, balance, what we hold on it,
other authorities' measures ahead of ours, and for every asset we hold nothing on the reason in words
(`why_not`). The same sheet is the case query's artifact (`markdown`), `clerk cases show` and the end of
`clerk query`.

No Prefect, HTTP or SQL here: `clerk.casebook.sheet` reads the values; numbers and names arrive masked.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from models.exemptions import LeftFree
from models.rules import Owed
from models.status import CaseStatus, MeasureStatus
from models.values import format_yuan

#: How a measure's status reads on the sheet.
STATUS_WORDS = {
    MeasureStatus.REQUESTED: "sent, awaiting the registry's answer",
    MeasureStatus.EFFECTIVE: "in force",
    MeasureStatus.QUEUED: "queued behind another authority",
    MeasureStatus.RENEWED: "renewed",
}
#: The same, for a dry run's plan: a requested measure is one that would be sent.
PLANNED = "would be sent"

KIND_WORDS = {"deposit": "deposit", "real_estate": "real estate", "vehicle": "vehicle"}


@dataclass(frozen=True, slots=True)
class OtherMeasure:
    """Another authority's measure on an asset, as its registry reported it."""

    authority: str
    amount_fen: int | None  # None: the whole asset
    expires_on: dt.date | None

    def words(self) -> str:
        amount = "all of it" if self.amount_fen is None else f"{format_yuan(self.amount_fen)} yuan"
        until = f" until {self.expires_on}" if self.expires_on else ""
        return f"{self.authority}: {amount}{until}"


@dataclass(frozen=True, slots=True)
class Ours:
    """One of this case's live measures on an asset."""

    kind: str  # freeze | seizure
    status: str
    claim_fen: int  # what it counts against the cap (0 for a seizure)
    held_fen: int | None  # what the registry says it holds (a freeze in force)
    expires_on: dt.date | None
    queue_position: int | None
    reference: str | None  # the registry's reference for it
    flag: str | None = None  # what was wrong with the registry's answer, flagged for a person

    def words(self, planned: bool) -> str:
        status = (
            PLANNED
            if planned and self.status == MeasureStatus.REQUESTED
            else STATUS_WORDS.get(MeasureStatus(self.status), self.status)
        )
        if self.flag:
            status += f"; flagged: {self.flag}"
        if self.kind == "freeze":
            what = f"freeze {format_yuan(self.claim_fen)} yuan"
            if self.held_fen is not None and self.held_fen != self.claim_fen:
                what += f" (holds {format_yuan(self.held_fen)})"
        else:
            what = "seizure"
        if self.queue_position:
            status += f" (place {self.queue_position})"
        parts = [what, status]
        if self.expires_on:
            parts.append(f"until {self.expires_on}")
        if self.reference:
            parts.append(f"ref {self.reference}")
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class HoldToCheck:
    """A hold of a case that ended (paid, withdrawn, closed) or owes nothing, which the clerk cannot lift on
    its own: the registry's answer to it (or to its release) is unknown, or was flagged as wrong. An
    operator's task: ask the registry, and lift it there."""

    case_number: str
    measure_id: int
    registry: str
    asset: str  # masked
    kind: str  # freeze | seizure
    problem: str

    def words(self) -> str:
        return (
            f"{self.registry} {self.kind} #{self.measure_id} on {self.asset}: {self.problem}; "
            "ask the registry and lift it there"
        )


#: The problem of a hold whose answer has not come (or was lost): settled by its key, unless it stays so.
UNKNOWN = "the registry's answer is not known (asked again by its key)"


@dataclass(frozen=True, slots=True)
class Found:
    """An asset of one of the case's debtors, as the registries last reported it, masked."""

    debtor: str  # masked ID
    person: bool  # a natural person (keeps a living allowance)
    registry: str
    kind: str  # deposit | real_estate | vehicle
    label: str  # masked account, certificate or plate
    balance_fen: int | None
    others: tuple[OtherMeasure, ...] = ()
    ours: tuple[Ours, ...] = ()  # this case's live measures on it
    for_other_cases_fen: int = 0  # what our freezes for other cases claim on it
    room_fen: int = 0  # a deposit's balance less the measures on it (clerk.control.cap.available)
    protected: str | None = None  # the purpose the law protects, when it does for this case


@dataclass(frozen=True, slots=True)
class Standing:
    """Where the case stands: owed today, what our live freezes claim and hold, and what is still short."""

    owed: Owed
    claimed_fen: int
    held_fen: int
    seized: int  # seizures in force
    seizures_waiting: int = 0  # seizures queued or awaiting the registry's answer

    @property
    def short_fen(self) -> int:
        """What the case owes that no freeze of ours claims (a judge decides what next)."""
        return max(0, self.owed.remaining - self.claimed_fen)


@dataclass(frozen=True, slots=True)
class Conditions:
    """What decided whether the clerk froze or seized on its own."""

    case_status: str
    auto_freeze: bool
    auto_seize: frozenset[str]
    allowance: dict[str, int] = field(default_factory=dict)  # masked debtor -> living allowance kept


def why_not(found: Found, standing: Standing, conditions: Conditions) -> str | None:
    """Why we hold nothing on an asset, in words; None when one of this case's measures is on it. The
    reasons are the planner's (clerk.control.planning), in the order it meets them."""
    if found.ours:
        return None
    if conditions.case_status != CaseStatus.ACTIVE:
        return f"the case is {conditions.case_status}: the clerk places nothing"
    if found.kind == "deposit":
        if not found.balance_fen:
            return "balance 0"
        if found.protected:
            return f"{LeftFree.PROTECTED} ({found.protected})"
        if found.room_fen == 0:
            held = [m.words() for m in found.others]
            if found.for_other_cases_fen:
                held.append(f"our freezes for other cases: {format_yuan(found.for_other_cases_fen)} yuan")
            return "all of it is held: " + "; ".join(held)
        if standing.short_fen == 0:
            return "not needed: what the case owes is claimed by other freezes"
        if not conditions.auto_freeze:
            return "automatic freezing is off: a judge decides"
        if found.person and conditions.allowance.get(found.debtor):
            kept = format_yuan(conditions.allowance[found.debtor])
            return f"{LeftFree.ALLOWANCE} ({kept} yuan across the debtor's deposits)"
        return "not frozen yet: the next control run places it"
    if standing.short_fen == 0:
        return "not needed: what the case owes is claimed by freezes"
    if found.kind not in conditions.auto_seize:
        return f"automatic seizure of {KIND_WORDS.get(found.kind, found.kind)} is off: a judge decides"
    return "not seized yet: the next control run places it"


@dataclass(frozen=True, slots=True)
class Money:
    """The case's money (案款): its sub-account at the court's bank (masked) and what the journal holds of
    what arrived, for whom (`clerk money show` has every arrival)."""

    subaccount: str | None
    received_fen: int
    fees_fen: int
    applicant_fen: int
    refundable_fen: int

    def rows(self) -> list[tuple[str, int]]:
        account = f", sub-account {self.subaccount}" if self.subaccount else ", no sub-account yet"
        return [
            (f"case money received (案款){account}", self.received_fen),
            ("  of it: the fee and costs", self.fees_fen),
            ("  of it: for the applicant", self.applicant_fen),
            ("  of it: refundable to the debtor", self.refundable_fen),
        ]


@dataclass(frozen=True, slots=True)
class Sheet:
    case_number: str
    judge: str
    standing: Standing
    found: tuple[Found, ...]
    conditions: Conditions
    left_free: tuple[str, ...] = ()  # the living allowance and protected accounts, in words
    planned: bool = False  # a dry run's plan: requested measures would be sent, nothing was
    to_check: tuple[HoldToCheck, ...] = ()  # holds the clerk cannot lift on its own: a person's task
    money: Money | None = None  # read by the case-money layer above (clerk.money.view.with_money)

    def reasons(self) -> list[str | None]:
        return [why_not(f, self.standing, self.conditions) for f in self.found]

    def standing_rows(self) -> list[tuple[str, str]]:
        """(label, yuan) for what is owed today and how our freezes stand against it."""
        o, s = self.standing.owed, self.standing
        rows = [
            ("principal", o.principal),
            ("judgment interest", o.judgment_interest),
            (f"delayed-performance interest ({o.days_late} days)", o.delayed_interest),
            ("enforcement fee", o.fee),
            ("other costs", o.costs),
            ("paid", -o.paid),
            ("owed today", o.remaining),
            ("claimed by our freezes" + (" (with the plan)" if self.planned else ""), s.claimed_fen),
            ("held by freezes in force", s.held_fen),
            ("short: no freeze claims it", s.short_fen),
            *(self.money.rows() if self.money else []),
        ]
        return [(label, format_yuan(amount)) for label, amount in rows]

    def asset_rows(self) -> list[dict[str, str]]:
        """One row per asset: where, what it holds, who is ahead of us, what we hold, or why not."""
        rows = []
        for found, reason in zip(self.found, self.reasons(), strict=True):
            balance = "" if found.balance_fen is None else format_yuan(found.balance_fen)
            ours = "; ".join(m.words(self.planned) for m in found.ours)
            rows.append(
                {
                    "debtor": found.debtor,
                    "registry": found.registry,
                    "asset": f"{KIND_WORDS.get(found.kind, found.kind)} {found.label}",
                    "balance": balance,
                    "ahead": "; ".join(m.words() for m in found.others),
                    "ours": ours or str(reason),
                }
            )
        return rows

    def headline(self) -> str:
        s = self.standing
        verb = "would claim" if self.planned else "claim"
        text = (
            f"{self.case_number}: owes {format_yuan(s.owed.remaining)} yuan today; our freezes {verb} "
            f"{format_yuan(s.claimed_fen)}, {format_yuan(s.held_fen)} held in force"
        )
        if s.seized:
            text += f"; {s.seized} item(s) seized"
        if s.seizures_waiting:
            text += f"; {s.seizures_waiting} seizure(s) queued or awaiting an answer"
        return text + (f"; {format_yuan(s.short_fen)} short" if s.short_fen else "; fully claimed")

    def markdown(self) -> str:
        """The sheet as a Prefect markdown artifact."""
        title = f"# Case sheet {self.case_number}" + (
            " (dry run: the plan, nothing sent)" if self.planned else ""
        )
        lines = [
            title,
            "",
            f"Judge {self.judge}; case {self.conditions.case_status}.",
            "",
            self.headline(),
            "",
        ]
        lines += ["| | yuan |", "|---|---:|"]
        lines += [f"| {label} | {amount} |" for label, amount in self.standing_rows()]
        lines.append("")
        rows = self.asset_rows()
        for debtor in dict.fromkeys(row["debtor"] for row in rows):  # four columns: the page's width
            lines += [
                f"## Assets of debtor {debtor}",
                "",
                "| registry | asset | balance | held by us, or why not |",
                "|---|---|---:|---|",
            ]
            mine = [r for r in rows if r["debtor"] == debtor]
            for row in mine:
                cells = (row["registry"], row["asset"], row["balance"], row["ours"])
                lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
            ahead = [f"- {r['registry']} {r['asset']}: {_cell(r['ahead'])}" for r in mine if r["ahead"]]
            if ahead:  # below the table, whose cells do not wrap in the UI
                lines += ["", "Other authorities' measures ahead of ours:", "", *ahead]
            lines.append("")
        if not rows:
            lines.append("No asset found yet: the registries reported nothing for the case's debtors.")
        if self.left_free:
            lines += ["", "## Left free by law", ""] + [f"- {item}" for item in self.left_free]
        if self.to_check:
            lines += ["", f"## For a person: holds the clerk cannot lift ({len(self.to_check)})", ""]
            lines += [f"- {_cell(hold.words())}" for hold in self.to_check]
        return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ") or "–"


def standing_of(owed: Owed, found: Iterable[Found]) -> Standing:
    """The case's standing from its assets' live measures."""
    claimed = held = seized = waiting = 0
    for f in found:
        for m in f.ours:
            if m.kind == "freeze":
                claimed += m.claim_fen
                if m.status != MeasureStatus.REQUESTED:
                    held += m.held_fen or 0
            elif m.status in (MeasureStatus.EFFECTIVE, MeasureStatus.RENEWED):
                seized += 1
            else:
                waiting += 1
    return Standing(owed, claimed, held, seized, waiting)
