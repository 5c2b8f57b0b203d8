"""Read a case's sheet (models.casesheet): its standing, every asset of its debtors with what we and other
authorities hold on it, and why we hold nothing where we hold nothing. Three reads; masked on the way out.

A dry run reads it inside its rolled-back transaction, after planning: the plan's measures show as what
would be sent.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from clerk.casebook import cases
from clerk.control import answers
from clerk.control.cap import available, covered_by
from models import casesheet
from models.exemptions import Deposit, LeftFree, Room, room_for
from models.policy import Policy
from models.status import ENDED, LIVE, MeasureStatus
from models.tables import Asset, CaseDebtor, ControlMeasure, Debtor, Registry
from models.values import DebtorKind, format_yuan, mask_account, mask_id


def case_sheet(
    session: Session, case_number: str, on: dt.date, policy: Policy, *, planned: bool = False
) -> casesheet.Sheet:
    case = cases.get_case(session, case_number)
    debtors = list(
        session.scalars(
            select(Debtor)
            .join(CaseDebtor, CaseDebtor.debtor_id == Debtor.id)
            .where(CaseDebtor.case_id == case.id)
            .order_by(Debtor.id)
        )
    )
    found = (
        session.execute(
            select(Asset, Registry.code)
            .join(Registry, Registry.id == Asset.registry_id)
            .where(Asset.debtor_id.in_([d.id for d in debtors]))
            .order_by(Asset.debtor_id, Asset.id)
        )
        .tuples()
        .all()
    )
    mine: dict[int, list[ControlMeasure]] = {}
    for_others: dict[int, int] = {}
    for m in session.scalars(
        select(ControlMeasure)
        .where(ControlMeasure.asset_id.in_([a.id for a, _ in found]), ControlMeasure.status.in_(LIVE))
        .order_by(ControlMeasure.id)
    ):
        if m.case_id == case.id:
            mine.setdefault(m.asset_id, []).append(m)
        else:
            for_others[m.asset_id] = for_others.get(m.asset_id, 0) + covered_by(m)
    people = {d.id: d.dependants for d in debtors if d.kind == DebtorKind.PERSON}
    deposits = [
        Deposit(a.id, a.debtor_id, available(a, 0), for_others.get(a.id, 0), a.purpose)
        for a, _ in found
        if a.kind == "deposit"
    ]
    room = room_for(policy.exempt, case, on, deposits, people)
    flags = answers.flagged(session, [case.id])
    by_id = {d.id: d for d in debtors}
    rows = tuple(
        casesheet.Found(
            debtor=mask_id(by_id[a.debtor_id].id_number),
            person=by_id[a.debtor_id].kind == DebtorKind.PERSON,
            registry=code,
            kind=a.kind,
            label=mask_account(a.identifier),
            balance_fen=a.balance_fen,
            others=_others(a.other_measures),
            ours=tuple(_ours(m, flags) for m in mine.get(a.id, [])),
            for_other_cases_fen=for_others.get(a.id, 0),
            room_fen=available(a, for_others.get(a.id, 0)),
            protected=a.purpose if a.id in room.protected else None,
        )
        for a, code in found
    )
    allowance = {mask_id(d.id_number): room.allowance.get(d.id, 0) for d in debtors if d.id in people}
    free = _left_free(debtors, found, room)
    owed = cases.owed(case, on)
    ended = case.status in ENDED or owed.remaining == 0
    return casesheet.Sheet(
        case_number=case.case_number,
        judge=case.judge,
        standing=casesheet.standing_of(owed, rows),
        found=rows,
        conditions=casesheet.Conditions(case.status, policy.auto_freeze, policy.auto_seize, allowance),
        left_free=tuple(_free_words(f) for f in free),
        planned=planned,
        to_check=tuple(answers.holds_to_check(session, [case.id])) if ended and not planned else (),
    )


def _left_free(
    debtors: Sequence[Debtor], found: Sequence[tuple[Asset, str]], room: Room
) -> list[dict[str, Any]]:
    """What may never be frozen in this case (查扣冻规定 art. 3), and why, as the law's reckoning says
    (`room`): each natural person's living allowance (what the person's deposits hold of it, or the whole of
    it to keep once some are found) and each account whose purpose the law protects."""
    result: list[dict[str, Any]] = []
    for d in debtors:
        allowance, kept = room.allowance.get(d.id, 0), room.kept.get(d.id, 0)
        if kept:
            result.append({"debtor": mask_id(d.id_number), "amount": kept, "why": LeftFree.ALLOWANCE})
        elif allowance:
            result.append({"debtor": mask_id(d.id_number), "amount": allowance, "why": LeftFree.NO_DEPOSITS})
    for a, code in found:
        if a.id in room.protected:
            account = f"{code} {mask_account(a.identifier)} ({a.purpose})"
            result.append({"account": account, "amount": a.balance_fen, "why": LeftFree.PROTECTED})
    return result


def _ours(m: ControlMeasure, flags: dict[tuple[int, int | None], str]) -> casesheet.Ours:
    return casesheet.Ours(
        kind=m.kind,
        status=m.status,
        claim_fen=covered_by(m),
        held_fen=m.actual_amount_fen,
        expires_on=m.expires_on,
        queue_position=m.queue_position,
        reference=m.registry_reference,
        # Flagged, and so waiting for a person or its key's status (a flag once settled is history).
        flag=flags.get((m.id, None)) if m.status == MeasureStatus.REQUESTED else None,
    )


def _others(stored: dict[str, Any] | None) -> tuple[casesheet.OtherMeasure, ...]:
    result = []
    for m in (stored or {}).get("measures", []):
        amount = m.get("amount_fen")
        until = m.get("expires_on")
        result.append(
            casesheet.OtherMeasure(
                str(m.get("authority") or "another authority"),
                None if amount is None else int(amount),
                dt.date.fromisoformat(until) if until else None,
            )
        )
    return tuple(result)


def _free_words(free: dict[str, Any]) -> str:
    where = free.get("debtor") or free.get("account")
    amount = "" if free["amount"] is None else f" {format_yuan(free['amount'])} yuan"
    return f"{where}{amount}: {free['why']}"
