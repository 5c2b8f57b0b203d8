"""The case lock: the one lock on which the cap depends.

Every writer of what a case owes or holds (a plan of freezes, a payment, a release, a deduction, a status
change, a resumption) begins by calling `lock_cases` in its transaction; two writers of the same case are
then serialised, and the second sees what the first wrote, so neither can pass the cap on a stale view.

How it locks, and why this way:
- The case rows are read `FOR NO KEY UPDATE`, in id order: two clerks locking overlapping cases wait for
  each other instead of deadlocking. `FOR NO KEY UPDATE`, not `FOR UPDATE`: a case's id never changes, and
  the stronger lock also waits for every insert of a row that refers to the case (a notice, a measure:
  PostgreSQL checks the reference with a `FOR KEY SHARE` lock), which a clerk recording control answers for
  other cases in its own order takes one after another; two shards of a province sweep deadlocked that way
  (tests/usecases/test_lock_order.py).
- Their `version` is bumped in one UPDATE: on SQLite that takes the database's write lock at once (SQLite
  has no row locks), and it tells any reader that the case changed.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select, update
from sqlalchemy.orm import Session, selectinload

from clerk.store import db
from models.tables import Case
from models.values import CaseNumber

_CASES = db.table(Case)


class CaseNotFound(LookupError):
    def __init__(self, case_number: str) -> None:
        super().__init__(case_number)
        self.case_number = case_number

    def __str__(self) -> str:
        return f"case_number: no case {self.case_number} in the case book"


def lock_case_ids(session: Session, case_ids: Iterable[int]) -> list[int]:
    """Lock the cases (see the module's docstring); the ids of those that exist, in order. For a writer
    that reads what it needs of them as rows (`control.plan_cases`: a thousand cases a page)."""
    ids = sorted(set(case_ids))
    if not ids:
        return []
    locked = db.all_rows(  # FOR NO KEY UPDATE (the module's docstring says why), in id order
        session,
        select(Case.id)
        .where(db.among(session, Case.id, ids))
        .order_by(Case.id)
        .with_for_update(key_share=True),
    )
    session.execute(
        update(_CASES).where(db.among(session, _CASES.c.id, ids)).values(version=_CASES.c.version + 1)
    )
    return sorted(case_id for (case_id,) in locked)


def lock_cases(session: Session, case_ids: Iterable[int]) -> dict[int, Case]:
    """Lock the cases (`lock_case_ids`) and return them, read under the lock with their payments; ids that
    name no case are left out."""
    ids = lock_case_ids(session, case_ids)
    if not ids:
        return {}
    return {
        case.id: case
        for case in session.scalars(
            select(Case)
            .where(Case.id.in_(ids))
            .order_by(Case.id)
            .options(selectinload(Case.payments))
            .execution_options(populate_existing=True)  # as they are now, version bumped
        )
    }


def lock_case(session: Session, case_id: int) -> Case:
    """`lock_cases` for one case that must exist."""
    case = lock_cases(session, [case_id]).get(case_id)
    if case is None:
        raise LookupError(f"case id {case_id} does not exist")
    return case


def lock_case_number(session: Session, case_number: str) -> Case:
    """`lock_cases` for the case of a number (`InvalidValue` if it is malformed, `CaseNotFound` if no case
    has it)."""
    number = str(CaseNumber.parse(case_number))
    case_id = session.scalar(select(Case.id).where(Case.case_number == number))
    if case_id is None:
        raise CaseNotFound(number)
    return lock_case(session, case_id)
