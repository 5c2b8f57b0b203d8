"""What operators see of a run: tables per registry, a progress bar, and a summary naming the cases that
need a person. Case numbers are public record; no ID, name or account number appears here."""

from __future__ import annotations

from collections.abc import Sequence

from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact
from prefect.events import emit_event

from clerk import control, querying
from models.casesheet import HoldToCheck
from models.values import format_yuan


def yuan(fen: int) -> str:
    return format_yuan(fen)


def registry_rows(tally: querying.Tally) -> list[dict[str, object]]:
    return [{"registry": code, **counts} for code, counts in sorted(tally.registries.items())]


def control_row(result: control.Counts) -> dict[str, object]:
    return {
        "cases": result.cases,
        "measures requested": result.requested,
        "effective": result.effective,
        "partial": result.partial,
        "queued": result.queued,
        "refused": result.refused,
        "awaiting answer": result.pending + result.unconfirmed,
        "seizures": result.seized,
        "frozen (yuan)": format_yuan(result.frozen_fen),
        "left free as living allowances (yuan)": format_yuan(result.allowance_kept_fen),
        "protected accounts left alone": result.protected_accounts,
    }


def needs_a_person(result: control.Counts) -> list[str]:
    """Cases still short of what they owe after this run's measures: a judge decides what comes next."""
    lines = [
        f"- {number}: {format_yuan(fen)} yuan owed that no freeze of ours claims (the case sheet says why)"
        for number, fen in result.short
    ]
    if result.short_cases > len(result.short):
        lines.append(f"- … and {result.short_cases - len(result.short)} more")
    return lines


def flag_events(result: control.Counts, key: str) -> list[str]:
    """The answers this run flagged for a person, per registry: a Prefect event each (for an automation: a
    bank that over-freezes, names another measure's reference or answers what cannot be read), and the
    summary's lines."""
    lines = []
    for registry, count in sorted(result.invalid_replies.items()):
        lines += [
            "",
            f"{registry} gave {count} invalid or unreadable answer(s): flagged for a person (a notice to "
            "the judge).",
        ]
        emit_event(
            event="clerk.registry.invalid_reply",
            resource={
                "prefect.resource.id": f"query-clerk.registry.{registry}",
                "prefect.resource.name": registry,
            },
            payload={"count": count, "flow": key},
        )
    return lines


def holds_to_check(holds: Sequence[HoldToCheck]) -> list[str]:
    """Holds of cases that ended which the clerk cannot lift on its own: an operator's task each."""
    if not holds:
        return []
    lines = ["", f"## Holds for a person to lift ({len(holds)})", ""]
    return lines + [f"- {hold.case_number}: {hold.words()}" for hold in holds]


async def publish(
    title: str, key: str, tally: querying.Tally, result: control.Counts, notes: list[str]
) -> str:
    """Create the run's artifacts; returns the markdown summary."""
    registries = registry_rows(tally)
    if registries:
        await acreate_table_artifact(
            registries, key=f"{key}-registries", description=f"{title}: per registry"
        )
    await acreate_table_artifact(
        [control_row(result)], key=f"{key}-control", description=f"{title}: measures"
    )
    failing = [r["registry"] for r in registries if r["failed"]]
    person = needs_a_person(result)
    lines = [f"# {title}", ""]
    lines += [
        f"- {r['registry']}: {r['queried']} queried, {r['hits']} hits ({r['new assets']} new), "
        f"{r['failed']} failed"
        for r in registries
    ]
    c = control_row(result)
    lines += [
        "",
        f"Measures: {c['measures requested']} requested, {c['effective']} effective "
        f"({c['partial']} partial), {c['queued']} queued, {c['refused']} refused, "
        f"{c['awaiting answer']} awaiting an answer; {c['frozen (yuan)']} yuan frozen.",
    ]
    if result.allowance_kept_fen or result.protected_accounts:
        lines += [
            "",
            f"Left free by law (查扣冻规定 art. 3): {c['left free as living allowances (yuan)']} yuan as "
            f"debtors' living allowances; {result.protected_accounts} account(s) whose purpose is protected.",
        ]
    if failing:
        lines += ["", f"Registries with failures (retried next run): {', '.join(map(str, failing))}"]
    lines += notes
    if person:
        lines += ["", f"## Cases that need a person ({result.short_cases})", *person]
    lines += flag_events(result, key)
    markdown = "\n".join(lines)
    await acreate_markdown_artifact(markdown, key=f"{key}-summary", description=title)
    return markdown
