"""`clerk money`: a case's money (案款), unidentified money (不明款) and what a person decides about it."""

from __future__ import annotations

from typing import Annotated

import typer
from rich import box
from rich.table import Table

from clerk.money import unidentified, view
from cli.common import ActorOption, ReasonOption, acting, actor_name, friendly_errors, out, unit_of_work
from models.access import Action
from models.money import Account
from models.supervision import bureau_today
from models.values import format_yuan, mask_account, mask_name, scrub_personal_data

money_app = typer.Typer(
    help="Case money (案款): what reached each case's sub-account (一案一账号), and unidentified money "
    "(不明款) for a person to place or send back.",
    no_args_is_help=True,
)

#: What a case's money is for, in the order a judge reads it.
SHOWN = (
    (Account.RECEIVED, "received, not yet split"),
    (Account.FEES, "the court's fee and costs"),
    (Account.APPLICANT, "payable to the applicant"),
    (Account.REFUNDABLE, "refundable to the debtor"),
    (Account.ESCROW, "in escrow (提存)"),
    (Account.PAID_OUT, "paid out"),
)


def _masked(account: str | None) -> str:
    return mask_account(account) if account else "—"


def _remittance(text: str) -> str:
    """Remittance text as operators see it: short, with IDs and account numbers in it masked."""
    masked = str(scrub_personal_data(text))
    return masked if len(masked) <= 16 else masked[:15] + "…"


@money_app.command("show")
@friendly_errors
def money_show(
    case_number: Annotated[str, typer.Argument(help="The case, e.g. (2025)京0105执10001号.")],
) -> None:
    """What reached the case's sub-account, from where, and what it is held for, in yuan."""
    with unit_of_work() as session:
        money = view.case_money(session, case_number)
    out.print(f"{money.case_number}: sub-account {_masked(money.subaccount)}")
    if not money.arrivals:
        out.print("no money has arrived for this case")
        return
    table = Table(box=box.SIMPLE, pad_edge=False)
    for column in ("value date", "yuan", "how", "from"):
        table.add_column(column, justify="right" if column == "yuan" else "left")
    for a in money.arrivals:
        payer = " ".join(
            p
            for p in (a.counterparty_name and mask_name(a.counterparty_name), _masked(a.counterparty_account))
            if p
        )
        table.add_row(a.value_date.isoformat(), format_yuan(a.amount_fen), a.how, payer)
    out.print(table)
    for account, label in SHOWN:
        if money.balances.get(account):
            out.print(f"  {label}: {format_yuan(money.balances[account])}")


@money_app.command("unidentified")
@friendly_errors
def money_unidentified() -> None:
    """Credits the clerk could not place with a case, oldest first: each waits for a person to assign it
    (clerk money assign) or send it back (clerk money return)."""
    with unit_of_work() as session:
        waiting = unidentified.waiting(session, bureau_today())
    if not waiting:
        out.print("no unidentified money")
        return
    table = Table(box=box.SIMPLE, pad_edge=False)
    for column in ("reference", "arrived", "days", "yuan", "to", "text"):
        table.add_column(column, justify="right" if column in ("days", "yuan") else "left")
    for w in waiting:
        table.add_row(
            w.reference,
            w.value_date.isoformat(),
            str(w.days),
            format_yuan(w.amount_fen),
            _masked(w.subaccount) if w.subaccount else "master",
            _remittance(w.remittance),
        )
    out.print(table)
    out.print(f"{len(waiting)} credit(s), {format_yuan(sum(w.amount_fen for w in waiting))} yuan")


@money_app.command("assign")
@friendly_errors
def money_assign(
    reference: Annotated[
        str, typer.Argument(help="The bank's reference of the credit (clerk money unidentified).")
    ],
    case_number: Annotated[str, typer.Argument(help="The case the money is for.")],
    reason: ReasonOption,
    actor: ActorOption = None,
) -> None:
    """Place an unidentified credit with its case: recorded as the case's payment on the day it arrived and
    split like any money the case receives (audited, with the reason)."""
    who = acting(case_number, actor, Action.PAY)
    with unit_of_work() as session:
        parts = unidentified.assign(
            session, reference, case_number, actor=who, reason=reason, today=bureau_today()
        )
    out.print(f"{reference} placed with {case_number}:")
    out.print(
        f"  fee and costs {format_yuan(parts.fees)}, applicant {format_yuan(parts.applicant)}, "
        f"refundable {format_yuan(parts.refundable)}"
    )


@money_app.command("return")
@friendly_errors
def money_return(
    reference: Annotated[str, typer.Argument(help="The bank's reference of the credit.")],
    reason: ReasonOption,
    actor: ActorOption = None,
) -> None:
    """Decide that an unidentified credit goes back to whoever paid it (audited, with the reason); the
    payment order itself goes with the payouts."""
    with unit_of_work() as session:
        fen = unidentified.send_back(session, reference, actor=actor_name(actor), reason=reason)
    out.print(f"{reference}: {format_yuan(fen)} to be returned to its payer")
