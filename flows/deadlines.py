"""Supervision (every 15 minutes): triage newly queried cases, check every node deadline, emit a Prefect
event for each warning and alert (automations can act on them), and send the notices."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_table_artifact
from prefect.client.schemas.objects import State
from prefect.events import emit_event
from prefect.states import Completed

from clerk import supervision
from clerk.store import db
from clerk.supervision.scoreboard import late_to_alert
from flows import runtime
from models.tables import utcnow


@flow(name="deadlines", flow_run_name=runtime.run_name("deadlines"))
async def deadlines() -> State:
    """Route cases whose first full query is done to a track, check the node deadlines (query within 24 h
    of filing, control within 24 h of a hit, renewal before expiry, supervision after days without
    progress), and tell judges: a warning before each deadline and an alert after, each once."""
    log = get_run_logger()
    async with runtime.opened() as rt:
        now = utcnow()

        tracks = await db.write(
            rt.sessions, supervision.triage_new, rt.ctx.today(), rt.settings.triage_rules, rt.ctx.actor
        )
        reached = await db.write(rt.sessions, supervision.check_deadlines, now, rt.settings.node_rules)
        for r in reached:
            emit_event(
                event=f"clerk.node.{r.level.value}",
                resource={
                    "prefect.resource.id": f"query-clerk.case.{r.case_id}",
                    "prefect.resource.name": r.case_number,
                    "query-clerk.node": r.deadline.node.value,
                    "query-clerk.track": r.track or "none",
                },
                payload={"subject": r.deadline.subject, "due_at": r.deadline.due_at.isoformat()},
            )
        for score in await db.write(rt.sessions, late_to_alert, now):  # the 24-hour rule, once a day
            emit_event(
                event="clerk.registry.late",
                resource={"prefect.resource.id": f"query-clerk.registry.{score.registry}"},
                payload={"open_after_24h": score.overdue, "late_answers": score.late},
            )
            log.warning(
                "%s: %d request(s) open after 24 hours (the 24-hour rule)", score.registry, score.overdue
            )
        sent = await runtime.send_notices(rt)
        counts: dict[str, int] = {}
        for r in reached:
            key = f"{r.deadline.node.value} {r.level.value}"
            counts[key] = counts.get(key, 0) + 1
        rows = [{"node": k, "cases": v} for k, v in sorted(counts.items())] or [
            {"node": "none reached", "cases": 0}
        ]
        await acreate_table_artifact(rows, key="deadlines", description="Node deadlines reached")
        by_track = ", ".join(f"{n:,} {track}" for track, n in sorted(tracks.items()))
        message = (
            f"triaged {sum(tracks.values()):,} case(s){f' ({by_track})' if by_track else ''}; "
            f"{len(reached):,} node notice(s); {sent:,} message(s) sent"
        )
        log.info(message)
        return Completed(message=message)
