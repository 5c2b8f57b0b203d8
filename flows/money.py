"""Case money (案款): read the court's bank statement into the journal every few minutes (new cases get
their sub-accounts first), and reconcile the bank and the journal every day. The use cases are
`clerk.money`; these flows run them and tell people what needs them."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact
from prefect.client.schemas.objects import State
from prefect.events import emit_event
from prefect.states import Completed, Failed

from clerk.money import arriving, reconcile, subaccounts, unidentified
from clerk.store import db
from flows import report, runtime
from models.values import mask_account


def _no_bank() -> State:
    return Completed(message="no court bank is set (CLERK_COURT_BANK_URL): no case money is followed")


@flow(name="money-statement", flow_run_name=runtime.run_name("money-statement"))
async def money_statement(listen_s: float | None = None) -> State:
    """Open a sub-account for every new case, then read the bank's statement from where the last run
    stopped: each line recorded once, placed with the deduction or the case it pays, or left as
    unidentified money for a person.

    Args:
        listen_s: How long to keep following the statement afterwards, by long poll (default: the setting
            money_listen_s; 0 reads and stops).
    """
    log = get_run_logger()
    async with runtime.opened() as rt:
        if rt.court_bank is None:
            return _no_bank()
        opened = await subaccounts.open_missing(rt.ctx, rt.court_bank)
        listen = rt.settings.money_listen_s if listen_s is None else max(listen_s, 0.0)
        arrived = await arriving.take_statement(
            rt.ctx, rt.court_bank, rt.settings.court_account, listen_s=listen
        )
        placed = arrived.placed
        row = {
            "sub-accounts opened": opened.opened,
            "lines": arrived.lines,
            "from deductions": placed["deduction"],
            "transfers": placed["transfer"],
            "unidentified": placed["unidentified"],
            "reversals": placed["reversal"],
            "repeated": placed["repeated"],
            "placed (yuan)": report.yuan(arrived.fen),
        }
        await acreate_table_artifact([row], key="money-statement", description="The court's bank statement")
        message = (
            f"{arrived.lines:,} line(s): {placed['deduction']} from deductions, "
            f"{placed['transfer']} transfer(s), {placed['unidentified']} unidentified; "
            f"{report.yuan(arrived.fen)} yuan placed"
        )
        if opened.failed:
            message += f"; {opened.failed} sub-account(s) not opened yet ({', '.join(opened.reasons)})"
        if placed["unidentified"]:
            emit_event(
                event="clerk.money.unidentified",
                resource={"prefect.resource.id": "query-clerk.money.unidentified"},
                payload={"lines": placed["unidentified"]},
            )
        await runtime.send_notices(rt)  # applicants told of money for them
        log.info(message)
        return Completed(message=message)


@flow(name="money-reconcile", flow_run_name=runtime.run_name("money-reconcile"))
async def money_reconcile() -> State:
    """Compare every account's closing balance at the court's bank with the journal, to the fen; a
    difference is for a person (the event clerk.money.unreconciled and the run's artifact), never an
    adjusting entry. Unidentified money older than unidentified_alert_days is alerted too."""
    log = get_run_logger()
    async with runtime.opened() as rt:
        if rt.court_bank is None:
            return _no_bank()
        result = await reconcile.reconcile(rt.ctx, rt.court_bank)
        old = [
            w
            for w in await db.read(rt.sessions, unidentified.waiting, rt.ctx.today())
            if w.days >= rt.settings.unidentified_alert_days
        ]
        if old:
            emit_event(
                event="clerk.money.unidentified_aged",
                resource={"prefect.resource.id": "query-clerk.money.unidentified"},
                payload={"lines": len(old), "fen": sum(w.amount_fen for w in old)},
            )
        if result.agreed:
            message = (
                f"{result.accounts:,} account(s) agree to the fen "
                f"({report.yuan(result.bank_fen)} yuan at the bank)"
            )
        else:
            emit_event(
                event="clerk.money.unreconciled",
                resource={"prefect.resource.id": "query-clerk.money.reconciliation"},
                payload={"accounts": len(result.differences), "behind": result.behind},
            )
            message = f"{len(result.differences)} account(s) differ from the bank: a person must look"
            if result.behind:
                message += "; the statement could not be read up to the balances"
            lines = [
                f"- `{mask_account(d.subaccount)}`: bank {report.yuan(d.bank_fen or 0)}, "
                f"journal {report.yuan(d.journal_fen or 0)} (off by {report.yuan(d.off_by)})"
                for d in result.differences[:200]
            ]
            await acreate_markdown_artifact(
                "\n".join([f"# Reconciliation: {message}", *lines]),
                key="money-unreconciled",
                description=message,
            )
        if old:
            days = rt.settings.unidentified_alert_days
            message += f"; {len(old)} unidentified credit(s) older than {days} days"
        await runtime.send_notices(rt)  # applicants told of money for them
        await runtime.send_notices(rt)  # judges told of their cases' sub-accounts that differ
        log.info(message)
        return Completed(message=message) if result.agreed or not result.behind else Failed(message=message)
