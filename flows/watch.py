"""The deposit watch (every 15 minutes, each run watching a little longer): follow the banks' push feeds
and poll the others' balances, freezing new deposits of cases not yet covered, up to what they still owe.
A run that found nothing ends with one line and no artifacts."""

from __future__ import annotations

import asyncio
import time

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_table_artifact
from prefect.client.schemas.objects import State
from prefect.states import Completed

from clerk import querying
from clerk.control import watch as use_cases
from connectors.base import BalancePort, FeedPort
from flows import report, runtime


@flow(name="watch", flow_run_name=runtime.run_name("watch"))
async def watch(listen_s: float | None = None, poll_s: float | None = None) -> State:
    """Watch the accounts already found for cases not yet covered, and freeze new deposits at once.

    Banks with a push feed are followed for `listen_s` seconds (each deposit frozen within seconds); the
    others are asked for balances every `poll_s` seconds. Runs every 15 minutes and listens a little
    longer, so runs overlap; the feed's cursor is kept in the database (locked while a page is recorded), so
    no deposit is missed between runs nor recorded twice.

    Args:
        listen_s: How long this run watches (default: the setting watch_listen_s, 905 s).
        poll_s: How often banks without a feed are polled (default: the setting watch_poll_s, 20 s).
    """
    log = get_run_logger()
    async with runtime.opened() as rt:
        listen = listen_s if listen_s is not None else rt.settings.watch_listen_s
        every = poll_s if poll_s is not None else rt.settings.watch_poll_s
        feeds = [
            c.code
            for c in rt.settings.registries
            if c.push_feed and isinstance(rt.ctx.ports.get(c.code), FeedPort)
        ]
        polled = [c for c, conn in rt.ctx.ports.items() if isinstance(conn, BalancePort) and c not in feeds]
        total = use_cases.WatchResult()

        async def poller() -> None:
            deadline = time.monotonic() + listen
            while True:
                total.add(await use_cases.poll_once(rt.ctx, feeds))
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                await asyncio.sleep(min(every, left))

        async def follow(code: str) -> None:
            total.add(await use_cases.listen(rt.ctx, code, listen, rt.settings.watch_feed_wait_s))

        log.info(
            "watching %d bank feed(s) and polling %d bank(s) for %.0f s", len(feeds), len(polled), listen
        )
        await asyncio.gather(*([poller()] if polled else []), *(follow(code) for code in feeds))
        row = {
            "feeds followed": len(feeds),
            "banks polled": len(polled),
            "accounts polled": total.polled_accounts,
            "feed events": total.feed_events,
            "cases with deposits": total.deposits,
            "failed calls": total.failed_calls,
        }
        if not (total.deposits or total.failed_calls or total.control.requested):
            message = (
                f"nothing new in {listen:.0f} s: {total.polled_accounts} account(s) polled, "
                f"{total.feed_events} feed event(s)"
            )
            log.info(message)
            return Completed(message=message)  # no artifacts: a quiet run leaves the UI quiet
        await acreate_table_artifact([row], key="watch-deposits", description="Deposit watch")
        await report.publish("Deposit watch", "watch", querying.Tally(), total.control, [])
        message = (
            f"{total.deposits} case(s) with new deposits; {total.control.effective} freeze(s) effective, "
            f"{report.yuan(total.control.frozen_fen)} yuan"
        )
        await runtime.send_notices(rt)
        log.info(message)
        return Completed(message=message)
