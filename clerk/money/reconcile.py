"""Reconciliation: the court's bank and the journal agree to the fen, account by account, or a person is
told. Never an adjusting entry: a difference is the bank's error or ours, and only a person can say which.

The bank's closing balances stand at one point of its statement (`through`); the statement is read up to
that point first, and the journal is counted up to it, so money arriving meanwhile is no difference.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from clerk.casebook import notices
from clerk.context import Context
from clerk.money import arriving, journal
from clerk.store import audit, db
from connectors.court_bank import CourtBankPort
from models import money
from models.tables import Case, Subaccount
from models.values import mask_account


@dataclass(frozen=True)
class Reconciliation:
    through: int
    accounts: int  # how many accounts the bank listed (the master account and every sub-account)
    bank_fen: int  # the master account's balance at the bank
    differences: tuple[money.Difference, ...]
    behind: bool = False  # the statement could not be read up to `through`: try again

    @property
    def agreed(self) -> bool:
        return not self.differences and not self.behind


def _record(session: Session, result: Reconciliation, actor: str) -> None:
    """The outcome on the audit trail; the judge of each case whose sub-account differs is told (the
    bureau by the flow's event and artifact)."""
    numbers = [d.subaccount for d in result.differences]
    for chunk in db.chunks(numbers):
        for case_id, case_number, sub in session.execute(
            select(Subaccount.case_id, Case.case_number, Subaccount.number)
            .join(Case, Case.id == Subaccount.case_id)
            .where(db.among(session, Subaccount.number, chunk))
        ):
            params = {"case": case_number, "subaccount": mask_account(sub), "through": result.through}
            notices.notify_case(session, case_id, "judge", "money.unreconciled", params)
    audit.append(
        session,
        "money.reconciled" if result.agreed else "money.unreconciled",
        actor=actor,
        payload={
            "through": result.through,
            "accounts": result.accounts,
            "behind": result.behind,
            "differences": [
                [mask_account(d.subaccount), d.bank_fen, d.journal_fen] for d in result.differences[:100]
            ],
            "difference_count": len(result.differences),
        },
    )


async def reconcile(ctx: Context, bank: CourtBankPort) -> Reconciliation:
    """Compare every account's closing balance at the bank with the journal, record the outcome in the
    audit trail and return it (the flow tells a person and emits `clerk.money.unreconciled`)."""
    at_bank = await bank.balances()
    if await db.read(ctx.sessions, arriving.cursor) < at_bank.through:
        await arriving.take_statement(ctx, bank, at_bank.master)
    behind = await db.read(ctx.sessions, arriving.cursor) < at_bank.through
    ours = await db.read(ctx.sessions, journal.bank_balances, at_bank.master, at_bank.through)
    result = Reconciliation(
        at_bank.through,
        len(at_bank.accounts),
        at_bank.accounts.get(at_bank.master, 0),
        tuple(money.differences(at_bank.accounts, ours)),
        behind,
    )
    await db.write(ctx.sessions, _record, result, ctx.actor)
    return result
