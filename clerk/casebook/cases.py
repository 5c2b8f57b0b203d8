"""Use cases on the case book: what a case owes, recording payments, listing cases.

Each takes a session (the caller owns the transaction) and returns plain values for the CLI or a flow.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from clerk.store import audit, locks
from clerk.store.locks import CaseNotFound as CaseNotFound  # the case book's error, raised by the lock
from models import rules
from models.exemptions import Exemption
from models.status import KEPT, CaseStatus
from models.tables import TRACKS, Case, CaseDebtor, ControlMeasure, Payment
from models.values import CaseNumber, DebtorKind, InvalidValue, format_yuan, mask_id, mask_name

DEFAULT_EXCEPTIONS = Path(__file__).parent / "data" / "credit_code_exceptions.txt"


def load_credit_code_exceptions(path: Path | None = None) -> frozenset[str]:
    """The reviewed list of legal pilot codes: the first word of each line that is not a comment."""
    text = (path or DEFAULT_EXCEPTIONS).read_text(encoding="utf-8")
    return frozenset(
        line.split()[0].upper() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )


def get_case(session: Session, case_number: str, *, for_update: bool = False) -> Case:
    """The case of a number; `for_update`: under the case lock (`store.locks`), for a writer."""
    if for_update:
        return locks.lock_case_number(session, case_number)
    number = str(CaseNumber.parse(case_number))
    stmt = select(Case).where(Case.case_number == number).options(selectinload(Case.payments))
    case = session.scalars(stmt).one_or_none()
    if case is None:
        raise CaseNotFound(number)
    return case


class Terms(Protocol):
    """What a case's debt is made of: a `Case`, or a row of its columns (`control.plan_cases`)."""

    @property
    def principal_fen(self) -> int: ...
    @property
    def judgment_interest_fen(self) -> int: ...
    @property
    def costs_fen(self) -> int: ...
    @property
    def performance_due_on(self) -> dt.date: ...


def debt_of(case: Terms) -> rules.Debt:
    return rules.Debt(
        principal=case.principal_fen,
        judgment_interest=case.judgment_interest_fen,
        costs=case.costs_fen,
        performance_due_on=case.performance_due_on,
    )


def owed(case: Case, on: dt.date) -> rules.Owed:
    return owed_with(case, [rules.Payment(p.paid_on, p.amount_fen) for p in case.payments], on)


def owed_with(case: Terms, payments: Sequence[rules.Payment], on: dt.date) -> rules.Owed:
    """What a case owes on `on`, its payments given (`owed` reads them off a `Case`; planning reads a page's
    cases and payments as rows)."""
    return rules.owed_on(debt_of(case), payments, on)


def owed_as_dict(value: rules.Owed) -> dict[str, Any]:
    fields = ("principal", "judgment_interest", "delayed_interest", "fee", "costs", "paid", "remaining")
    data = asdict(value)
    return {"on": value.on.isoformat(), "days_late": value.days_late} | {f: data[f] for f in fields}


@dataclass(frozen=True, slots=True)
class CaseView:
    """What an operator may see of a case beside its sheet (clerk.control.sheet: its assets and measures):
    personal data masked."""

    case: dict[str, Any]
    owed: dict[str, Any]
    debtors: list[dict[str, Any]]
    payments: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def case_view(session: Session, case_number: str, on: dt.date) -> CaseView:
    case = get_case(session, case_number)
    links = session.scalars(
        select(CaseDebtor).where(CaseDebtor.case_id == case.id).options(selectinload(CaseDebtor.debtor))
    ).all()
    debtors = sorted((link.debtor for link in links), key=lambda d: d.id)
    masked_debtor = {d.id: mask_id(d.id_number) for d in debtors}
    return CaseView(
        case={
            "case_number": case.case_number,
            "court_code": case.court_code,
            "filed_on": case.filed_on.isoformat(),
            "judge": case.judge,
            "applicant": mask_name(case.applicant),
            "status": case.status,
            "track": case.track,
            "performance_due_on": case.performance_due_on.isoformat(),
            "overrides": [e.value for e in Exemption if getattr(case, _OVERRIDES[e])],
        },
        owed=owed_as_dict(owed(case, on)),
        debtors=[
            {
                "kind": d.kind,
                "id": masked_debtor[d.id],
                "name": mask_name(d.name, DebtorKind(d.kind)),
            }
            for d in debtors
        ],
        payments=[{"paid_on": p.paid_on.isoformat(), "amount": p.amount_fen} for p in case.payments],
    )


def record_payment(
    session: Session,
    case_number: str,
    amount_fen: int,
    paid_on: dt.date,
    *,
    actor: str,
    today: dt.date,
    again: bool = False,
    overpaid: bool = False,
    source: str = "manual",
) -> rules.Owed:
    """Record a payment and return what is owed on its date afterwards. Refused, unless the caller says it is
    meant: the same amount on the same day as a payment already recorded (`again`: a second payment, not
    the first one typed twice), and more than is owed on its date (`overpaid`); a case already paid takes
    no payment at all."""
    if amount_fen <= 0:
        raise InvalidValue("amount", "a payment must be more than 0")
    if paid_on > today:
        raise InvalidValue("paid_on", f"{paid_on} is in the future")
    case = get_case(session, case_number, for_update=True)
    if paid_on < case.filed_on - dt.timedelta(days=3650):
        raise InvalidValue("paid_on", f"{paid_on} is long before the case was filed ({case.filed_on})")
    if case.status in (CaseStatus.WITHDRAWN, CaseStatus.CLOSED, CaseStatus.PAID):
        raise InvalidValue("case_number", f"{case.case_number} is {case.status}: no payment can be recorded")
    if not again and any(p.paid_on == paid_on and p.amount_fen == amount_fen for p in case.payments):
        raise InvalidValue(
            "amount",
            f"a payment of {format_yuan(amount_fen)} on {paid_on} is already recorded: if this is a second "
            "one, say so (--again)",
        )
    before = owed(case, paid_on)
    if not overpaid and amount_fen > before.remaining:
        raise InvalidValue(
            "amount",
            f"{format_yuan(amount_fen)} is more than the {format_yuan(before.remaining)} owed on {paid_on}: "
            "if the debtor really paid more, say so (--overpaid)",
        )
    after, events = add_payment(case, amount_fen, paid_on, actor=actor, source=source)
    session.flush()
    audit.append_many(session, events)
    return after


def add_payment(
    case: Case, amount_fen: int, paid_on: dt.date, *, actor: str, source: str
) -> tuple[rules.Owed, list[audit.Entry]]:
    """A payment added to a case its caller locked and checked (`record_payment`): what is owed on its
    date afterwards, and the events to append (`payment_events`). The case is marked paid when nothing
    is owed."""
    before = owed(case, paid_on)
    case.payments.append(Payment(paid_on=paid_on, amount_fen=amount_fen, source=source))
    after = owed(case, paid_on)
    events = payment_events(case, amount_fen, paid_on, before, after, actor=actor, source=source)
    if len(events) > 1:
        case.status = CaseStatus.PAID
    return after, events


class Payable(Protocol):
    @property
    def case_number(self) -> str: ...
    @property
    def status(self) -> str: ...


def payment_events(
    case: Payable,
    amount_fen: int,
    paid_on: dt.date,
    before: rules.Owed,
    after: rules.Owed,
    *,
    actor: str,
    source: str,
) -> list[audit.Entry]:
    """The events of a payment recorded (a person's, `add_payment`; a page of the court's bank statement's,
    which writes its payments as rows): the payment, and the case paid when nothing is owed after it
    and the case was running (the caller then marks it paid)."""
    events = [
        audit.Entry(
            "payment.recorded",
            actor,
            case.case_number,
            {
                "amount_fen": amount_fen,
                "paid_on": paid_on.isoformat(),
                "remaining_before_fen": before.remaining,
                "remaining_after_fen": after.remaining,
                "overpaid_fen": max(amount_fen - before.remaining, 0),
                "source": source,
            },
        )
    ]
    if after.remaining == 0 and case.status in KEPT:
        events.append(paid_event(case, actor))
    return events


def paid_event(case: Payable, actor: str) -> audit.Entry:
    return audit.Entry("case.paid", actor, case.case_number, {"status_before": case.status})


def mark_paid(session: Session, case: Case, actor: str) -> None:
    """Nothing is owed any more: the case is paid, and the release step lifts all its measures."""
    audit.append_many(session, [paid_event(case, actor)])
    case.status = CaseStatus.PAID


#: Status changes a person may make, from -> to.
_CHANGES = {
    "terminated": ("active",),  # 终本: no assets found for now
    "withdrawn": ("active", "terminated"),
    "closed": ("active", "terminated", "paid"),
    "active": ("terminated",),  # a judge resumes it by hand (a re-query hit resumes it as a new case)
}


def change_status(
    session: Session, case_number: str, status: str, *, actor: str, reason: str, today: dt.date
) -> Case:
    """A judge's change of a case's status, audited with the reason. Ending a case (withdrawn, closed)
    makes the release step lift its measures; terminating it starts the 6-monthly re-query."""
    if status not in _CHANGES:
        raise InvalidValue("status", f"{status!r} cannot be set by hand: use one of {', '.join(_CHANGES)}")
    if not reason.strip():
        raise InvalidValue("reason", "a status change needs a reason for the audit trail")
    case = get_case(session, case_number, for_update=True)
    if case.status not in _CHANGES[status]:
        raise InvalidValue("status", f"{case.case_number} is {case.status}: it cannot become {status}")
    before = case.status
    case.status = status
    case.terminated_on = today if status == "terminated" else case.terminated_on
    audit.append(
        session,
        f"case.{status}",
        actor=actor,
        case_number=case.case_number,
        payload={"status_before": before, "reason": reason.strip()[:500]},
    )
    return case


def set_track(session: Session, case_number: str, track: str, *, actor: str, reason: str) -> Case:
    """A judge's choice of track (e.g. special, 特执); triage never overwrites it. Audited."""
    if track not in TRACKS:
        raise InvalidValue("track", f"{track!r} is not a track: use one of {', '.join(TRACKS)}")
    if not reason.strip():
        raise InvalidValue("reason", "a track override needs a reason for the audit trail")
    case = get_case(session, case_number, for_update=True)
    audit.append(
        session,
        "case.track_set",
        actor=actor,
        case_number=case.case_number,
        payload={"track_before": case.track, "track": track, "reason": reason.strip()[:500]},
    )
    case.track, case.track_source = track, "judge"
    return case


_OVERRIDES = {Exemption.ALLOWANCE: "override_allowance", Exemption.PROTECTED: "override_protected"}


def set_override(
    session: Session,
    case_number: str,
    exemption: str,
    *,
    on: bool,
    actor: str,
    reason: str,
    by: str | None = None,
) -> Case:
    """A judge's override, for this case only, of what may never be frozen (models.exemptions): freeze the
    living allowance too, or accounts whose purpose is protected. Audited with the reason; `on=False`
    lifts it."""
    try:
        which = Exemption(exemption)
    except ValueError:
        choices = ", ".join(e.value for e in Exemption)
        raise InvalidValue("exemption", f"{exemption!r} is not an exemption: use one of {choices}") from None
    if not reason.strip():
        raise InvalidValue("reason", "an override needs a reason for the audit trail")
    case = get_case(session, case_number, for_update=True)
    before = getattr(case, _OVERRIDES[which])
    setattr(case, _OVERRIDES[which], on)
    audit.append(
        session,
        "case.override_set" if on else "case.override_lifted",
        actor=actor,
        case_number=case.case_number,
        payload={"exemption": which.value, "before": before, "reason": reason.strip()[:500]}
        | ({"by": by} if by else {}),
    )
    return case


@dataclass(frozen=True, slots=True)
class CaseLine:
    case_number: str
    judge: str
    status: str
    debtors: int
    remaining: int
    track: str | None = None


def count_cases(session: Session, status: str | None = None) -> int:
    stmt = select(func.count()).select_from(Case)
    return session.scalar(stmt.where(Case.status == status) if status else stmt) or 0


def list_cases(
    session: Session, on: dt.date, status: str | None = None, limit: int | None = 100
) -> list[CaseLine]:
    """Cases by case number with what each owes on `on`: the first `limit` (None: all)."""
    debtor_count = select(CaseDebtor.case_id, func.count().label("n")).group_by(CaseDebtor.case_id).subquery()
    stmt = (
        select(Case, debtor_count.c.n)
        .join(debtor_count, debtor_count.c.case_id == Case.id)
        .options(selectinload(Case.payments))
        .order_by(Case.case_number)
        .limit(limit)
    )
    if status:
        stmt = stmt.where(Case.status == status)
    return [
        CaseLine(c.case_number, c.judge, c.status, n, owed(c, on).remaining, c.track)
        for c, n in session.execute(stmt)
    ]


def example_case(session: Session) -> Case | None:
    """An active case with a freeze in force (the first by case number): what the demo suggests a judge
    query, so that the query and the case's page show something."""
    return session.scalars(
        select(Case)
        .join(ControlMeasure, ControlMeasure.case_id == Case.id)
        .where(Case.status == "active", ControlMeasure.kind == "freeze", ControlMeasure.status == "effective")
        .order_by(Case.case_number)
        .limit(1)
    ).first()
