"""Release (every few minutes): lift every measure of a case paid, withdrawn or closed, and the excess of
any case whose freezes hold more than it owes today."""

from __future__ import annotations

import asyncio

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_table_artifact
from prefect.client.schemas.objects import State
from prefect.states import Completed

from clerk import control, lifecycle
from flows import report, runtime


@flow(name="release")
async def release() -> State:
    """Release what the cap no longer allows: all measures of cases that ended, and the part of freezes above
    what a case owes today (after a payment, or two banks answering at once), cut in the order the setting
    release_order names (newest first by default)."""
    log = get_run_logger()
    async with runtime.opened() as rt:
        today = runtime.today()

        def plan() -> tuple[int, list[int]]:
            with rt.sessions() as session:
                case_ids = lifecycle.cases_to_release(session, today)
            ids: list[int] = []
            for case_id in case_ids:
                with rt.sessions.begin() as session:
                    ids += lifecycle.plan_release(
                        session, case_id, today, rt.settings.release_order, rt.actor
                    )
            return len(case_ids), ids

        cases, action_ids = await asyncio.to_thread(plan)
        tally = await control.send_actions(
            rt.sessions, rt.connectors, action_ids, rt.actor, today, rt.settings.court_account
        )
        row = {
            "cases": cases,
            "releases": len(action_ids),
            "done": tally.done,
            "refused": tally.refused,
            "unconfirmed": tally.unconfirmed,
            "partly released (yuan)": report.yuan(tally.amount_fen),
        }
        await acreate_table_artifact([row], key="release", description="Releases")
        message = f"{tally.done} of {len(action_ids)} release(s) done for {cases} case(s)"
        await runtime.send_notices(rt)
        log.info(message)
        return Completed(message=message)
