"""Renewal (daily): renew every measure whose renewal day has come, with its original reference; mark and
alert those that lapsed anyway."""

from __future__ import annotations

import asyncio

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_table_artifact
from prefect.client.schemas.objects import State
from prefect.events import emit_event
from prefect.states import Completed

from clerk import control, lifecycle
from clerk.casebook import notices
from flows import runtime
from models.tables import Case


@flow(name="renewal")
async def renewal() -> State:
    """Renew measures due for renewal (the setting renewal_lead_days before they lapse, at least 7) of
    cases that still owe something; the new expiry comes from the registry's reply. A measure that lapsed
    anyway is marked expired, audited and alerted (a Prefect event and a notice to the judge), never
    renewed silently."""
    log = get_run_logger()
    async with runtime.opened() as rt:
        today = runtime.today()

        def plan() -> tuple[list[tuple[int, int, str]], list[int]]:
            with rt.sessions.begin() as session:
                lapsed = lifecycle.expire_lapsed(session, today, rt.actor)
                told = []
                for case_id, measure_id in lapsed:
                    case = session.get(Case, case_id)
                    assert case is not None
                    notices.notify(session, case, "judge", "measure.lapsed", {"case": case.case_number})
                    told.append((case_id, measure_id, case.case_number))
            with rt.sessions.begin() as session:
                return told, lifecycle.plan_renewals(session, today, rt.settings.renewal_lead_days, rt.actor)

        lapsed, action_ids = await asyncio.to_thread(plan)
        for case_id, measure_id, number in lapsed:
            emit_event(
                event="clerk.measure.lapsed",
                resource={
                    "prefect.resource.id": f"query-clerk.case.{case_id}",
                    "prefect.resource.name": number,
                },
                payload={"measure": measure_id},
            )
        tally = await control.send_actions(
            rt.sessions, rt.connectors, action_ids, rt.actor, today, rt.settings.court_account
        )
        row = {
            "due": len(action_ids),
            "renewed": tally.done,
            "refused": tally.refused,
            "unconfirmed": tally.unconfirmed,
            "lapsed": len(lapsed),
        }
        await acreate_table_artifact([row], key="renewal", description="Renewals")
        message = f"{tally.done} of {len(action_ids)} measure(s) renewed; {len(lapsed)} lapsed (alerted)"
        await runtime.send_notices(rt)
        log.info(message)
        return Completed(message=message)
