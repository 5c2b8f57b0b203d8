"""Collect what registries answered "later", and resolve measures whose answer never came."""

from __future__ import annotations

import datetime as dt

from prefect import flow, get_run_logger
from prefect.client.schemas.objects import State
from prefect.states import Completed

from clerk import service
from flows import report, runtime
from models.tables import utcnow


@flow(name="collect")
async def collect(registries: list[str] | None = None) -> State:
    """Collect answers that registries promised for later (queries and control requests), and resolve
    measures written down but never confirmed by asking the status of their idempotency keys: a measure is
    never sent twice.

    Args:
        registries: Registry codes to collect from (default: every registry in the settings).
    """
    log = get_run_logger()
    async with runtime.opened(registries) as rt:
        recorded = await service.collect_queries(rt.sessions, rt.connectors, rt.registry_ids, rt.actor)
        older = utcnow() - dt.timedelta(seconds=rt.settings.unconfirmed_after_s)
        resolved = await service.resolve_unconfirmed(rt.sessions, rt.connectors, older, rt.actor)
        batch = service.BatchResult("(collected)", recorded=recorded)
        await report.publish("Collect", "collect", [batch] if recorded.queried else [], resolved, [])
        message = (
            f"{recorded.queried} late answers collected ({recorded.new_assets} new hits); "
            f"{resolved.effective} measures confirmed, {resolved.unconfirmed} still unconfirmed"
        )
        log.info(message)
        return Completed(message=message)
