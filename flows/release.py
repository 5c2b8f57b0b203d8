"""Release (every few minutes): lift every measure of a case paid, withdrawn or closed, and the excess of
any case whose freezes hold more than it owes today."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact
from prefect.client.schemas.objects import State
from prefect.states import Completed

from clerk import lifecycle
from flows import report, runtime


@flow(name="release", flow_run_name=runtime.run_name("release"))
async def release() -> State:
    """Release what the cap no longer allows: all measures of cases that ended, and the part of freezes above
    what a case owes today (after a payment, or two banks answering at once), cut in the order the setting
    release_order names (newest first by default)."""
    log = get_run_logger()
    async with runtime.opened() as rt:
        released = await lifecycle.release_due(rt.ctx, rt.settings.release_order)
        cases, tally = released.cases, released.counts
        row = {
            "cases": cases,
            "releases": released.releases,
            "done": tally.done,
            "refused": tally.refused,
            "unconfirmed": tally.unconfirmed,
            "holds for a person": len(released.to_check),
            "partly released (yuan)": report.yuan(tally.amount_fen),
        }
        await acreate_table_artifact([row], key="release", description="Releases")
        message = f"{tally.done} of {released.releases} release(s) done for {cases} case(s)"
        lines = report.flag_events(tally, "release") + report.holds_to_check(released.to_check)
        if released.to_check:
            message += f"; {len(released.to_check)} hold(s) of ended cases for a person to lift"
        if lines:
            summary = "\n".join([f"# Release: {message}", *lines])
            await acreate_markdown_artifact(summary, key="release-summary", description=message)
        await runtime.send_notices(rt)
        log.info(message)
        return Completed(message=message)
