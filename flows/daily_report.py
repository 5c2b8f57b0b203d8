"""The daily report (08:00 Asia/Shanghai): per court and judge, what the clerk did yesterday."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact
from prefect.client.schemas.objects import State
from prefect.states import Completed

from clerk.money import view
from clerk.store import db
from clerk.supervision import reports
from clerk.supervision.scoreboard import registry_scoreboard
from flows import runtime, sequencer
from models.supervision import start_of
from models.tables import utcnow
from models.values import InvalidValue, format_yuan


@flow(name="daily-report", flow_run_name=runtime.run_name("daily-report", "day"))
async def daily_report(day: str | None = None) -> State:
    """Queries, hits, frozen and seized, renewed, released, deductions and overdue nodes per court and judge
    for one day, as a table and a markdown artifact and a CSV file under the data directory.

    Args:
        day: The day, YYYY-MM-DD (default: yesterday, Beijing time).
    """
    log = get_run_logger()
    try:
        on = dt.date.fromisoformat(day) if day else reports.yesterday(utcnow())
    except ValueError:
        return runtime.refused(InvalidValue("day", f"{day!r} is not a date (YYYY-MM-DD)"))
    async with runtime.opened() as rt:
        rows = await db.read(rt.sessions, reports.daily, on)
        money = await db.read(rt.sessions, view.standing, rt.ctx.today(), rt.settings.unidentified_alert_days)
        scores = await db.read(
            rt.sessions, registry_scoreboard, start_of(on), start_of(on + dt.timedelta(days=1)), utcnow()
        )
        await acreate_table_artifact(
            [s.as_row() for s in scores],
            key="registry-scoreboard",
            description=f"Registries on {on}: the 24-hour rule",
        )
        path = rt.settings.data_dir / "reports" / f"daily-{on.isoformat()}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        # A run for the same day writes its file again: replaced, never written through a link.
        await asyncio.to_thread(functools.partial(reports.write_csv, path, rows, replace=True))
        sums = reports.totals(rows)
        if rows:
            await acreate_table_artifact(rows, key="daily-report-table", description=f"Daily report {on}")
        lines = [
            f"# Daily report {on}",
            "",
            f"{len(rows)} court/judge rows; CSV: `{path}`",
            "",
            f"- queries {sums.get('queries', 0)}, hits {sums.get('hits', 0)}",
            f"- frozen {sums.get('frozen', 0)} ({format_yuan(sums.get('frozen_fen', 0))} yuan), "
            f"seized {sums.get('seized', 0)}",
            f"- renewed {sums.get('renewed', 0)}, released {sums.get('released', 0)}, "
            f"lapsed {sums.get('lapsed', 0)}",
            f"- deductions {sums.get('deductions', 0)} ({format_yuan(sums.get('deducted_fen', 0))} yuan)",
            f"- case money (案款) placed with its cases: {sums.get('money_in', 0)} credit(s), "
            f"{format_yuan(sums.get('money_in_fen', 0))} yuan",
            *money.lines(rt.settings.unidentified_alert_days),
            f"- overdue nodes {sums.get('overdue_nodes', 0)}",
            "- registries that broke the 24-hour rule: "
            + (", ".join(s.registry for s in scores if not s.kept_the_rule) or "none"),
            f"- active cases by track: fast {sums.get('active_fast', 0)}, "
            f"simple {sums.get('active_simple', 0)}, normal {sums.get('active_normal', 0)}, "
            f"special {sums.get('active_special', 0)}, "
            f"not yet triaged {sums.get('active_untriaged', 0)}",
        ]
        sealed = await sequencer.seal(rt.sessions, rt.settings)
        if sealed.head is not None:
            lines += [
                "",
                "## The audit log's signed head",
                "",
                f"`{sealed.head.short}`, signed {sealed.head.signed_at} with key `{sealed.head.key_id}` "
                f"({sealed.size:,} events). Publish it: anyone holding it can later prove the log only "
                "grew (`clerk audit consistency`) and check a case's export against it "
                "(`clerk audit check-export`).",
            ]
        await acreate_markdown_artifact(
            "\n".join(lines), key="daily-report", description=f"Daily report {on}"
        )
        log.info("daily report %s: %d rows, %s", on, len(rows), path)
        return Completed(message=f"daily report {on}: {len(rows)} rows")
