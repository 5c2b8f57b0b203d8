"""What operators see of a run: tables per registry, a progress bar, and a summary naming the cases that
need a person. Case numbers are public record; no ID, name or account number appears here."""

from __future__ import annotations

from collections.abc import Iterable

from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact

from clerk import control, service
from models.values import format_yuan


def yuan(fen: int) -> str:
    return format_yuan(fen)


def registry_rows(batches: Iterable[service.BatchResult]) -> list[dict[str, object]]:
    rows: dict[str, dict[str, int]] = {}
    for b in batches:
        row = rows.setdefault(
            b.registry,
            dict.fromkeys(
                ("queried", "hits", "new assets", "changed", "pending", "failed", "skipped batches"), 0
            ),
        )
        r = b.recorded
        row["queried"] += r.queried + b.failed
        row["hits"] += r.hits
        row["new assets"] += r.new_assets
        row["changed"] += r.changed
        row["pending"] += r.pending
        row["failed"] += b.failed
        row["skipped batches"] += b.skipped
    return [{"registry": code, **counts} for code, counts in sorted(rows.items())]


def control_row(result: service.ControlResult) -> dict[str, object]:
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
    }


def unanswered(batches: Iterable[service.BatchResult]) -> str | None:
    """Each registry's reason, when there were lookups and none of them was answered; else None."""
    batches = list(batches)
    if not batches or not all(b.error for b in batches):
        return None
    return "; ".join(sorted({f"{b.registry}: {b.error}" for b in batches}))


def needs_a_person(plans: Iterable[control.Plan]) -> list[str]:
    """Cases still short of what they owe after this run's measures: a judge decides what comes next."""
    lines = []
    for plan in plans:
        short = plan.remaining_fen - plan.covered_before_fen - plan.freeze_fen
        if short > 0:
            lines.append(f"- {plan.case_number}: {format_yuan(short)} yuan owed not covered by any freeze")
    return lines


async def publish(
    title: str, key: str, batches: list[service.BatchResult], result: service.ControlResult, notes: list[str]
) -> str:
    """Create the run's artifacts; returns the markdown summary."""
    registries = registry_rows(batches)
    if registries:
        await acreate_table_artifact(
            registries, key=f"{key}-registries", description=f"{title}: per registry"
        )
    await acreate_table_artifact(
        [control_row(result)], key=f"{key}-control", description=f"{title}: measures"
    )
    failing = [r["registry"] for r in registries if r["failed"]]
    person = needs_a_person(result.planned)
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
    if failing:
        lines += ["", f"Registries with failures (retried next run): {', '.join(map(str, failing))}"]
    lines += notes
    if person:
        lines += ["", f"## Cases that need a person ({len(person)})", *person[:200]]
        if len(person) > 200:
            lines.append(f"- … and {len(person) - 200} more")
    markdown = "\n".join(lines)
    await acreate_markdown_artifact(markdown, key=f"{key}-summary", description=title)
    return markdown
