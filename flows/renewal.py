"""Renewal (daily): renew every measure whose renewal day has come, with its original reference; mark and
alert those that lapsed anyway."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_table_artifact
from prefect.client.schemas.objects import State
from prefect.events import emit_event
from prefect.states import Completed

from clerk import lifecycle
from flows import report, runtime


@flow(name="renewal", flow_run_name=runtime.run_name("renewal"))
async def renewal() -> State:
    """Renew measures due for renewal (the setting renewal_lead_days before they lapse, at least 7) of
    cases that still owe something; the new expiry comes from the registry's reply. A measure that lapsed
    anyway is marked expired, audited and alerted (a Prefect event and a notice to the judge), never
    renewed silently."""
    log = get_run_logger()
    async with runtime.opened() as rt:
        renewed = await lifecycle.renew_due(rt.ctx, rt.settings.renewal_lead_days)
        lapsed, tally = renewed.lapsed, renewed.counts
        for lapse in lapsed:
            emit_event(
                event="clerk.measure.lapsed",
                resource={
                    "prefect.resource.id": f"query-clerk.case.{lapse.case_id}",
                    "prefect.resource.name": lapse.case_number,
                },
                payload={"measure": lapse.measure_id},
            )
        row = {
            "due": renewed.due,
            "renewed": tally.done,
            "refused": tally.refused,
            "unconfirmed": tally.unconfirmed,
            "lapsed": len(lapsed),
        }
        await acreate_table_artifact([row], key="renewal", description="Renewals")
        message = f"{tally.done} of {renewed.due} measure(s) renewed; {len(lapsed)} lapsed (alerted)"
        report.flag_events(tally, "renewal")  # unreadable answers: flagged, settled by key in collect
        await runtime.send_notices(rt)
        log.info(message)
        return Completed(message=message)
