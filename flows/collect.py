"""Collect what registries answered "later", and resolve measures whose answer never came."""

from __future__ import annotations

import datetime as dt

from prefect import flow, get_run_logger
from prefect.client.schemas.objects import State
from prefect.states import Completed

from clerk import control, lifecycle, querying
from flows import report, runtime


@flow(name="collect", flow_run_name=runtime.run_name("collect"))
async def collect(registries: list[str] | None = None) -> State:
    """Collect answers that registries promised for later (queries and control requests); resolve measures,
    renewals, releases and deductions written down but never confirmed by asking the status of their
    idempotency keys (nothing is ever sent twice); ask the state of queued and partial measures (a queued
    one takes effect when the earlier authority's measure is lifted); send pending notices.

    Args:
        registries: Registry codes to collect from (default: every registry in the settings).
    """
    log = get_run_logger()
    async with runtime.opened(registries) as rt:
        ctx = rt.ctx
        recorded = await querying.collect_queries(ctx)
        older = ctx.now() - dt.timedelta(seconds=rt.settings.unconfirmed_after_s)
        resolved = await control.resolve_unconfirmed(ctx, older)
        actions = await control.resolve_actions(ctx, older)
        states = await lifecycle.refresh_measures(ctx)
        sent = await runtime.send_notices(rt)
        batch = querying.BatchResult("(collected)", recorded=recorded)
        resolved.add_flags(actions.invalid_replies)  # renewals, releases, deductions
        await report.publish(
            "Collect", "collect", querying.Tally.of([batch] if recorded.queried else []), resolved, []
        )
        message = (
            f"{recorded.queried} late answers collected ({recorded.new_assets} new hits); "
            f"{resolved.effective} measures confirmed, {resolved.unconfirmed} still unconfirmed; "
            f"{actions.done} renewals/releases/deductions confirmed; "
            f"{states.done} of {states.planned} queued or partial measures changed; {sent} notices sent"
        )
        log.info(message)
        return Completed(message=message)
