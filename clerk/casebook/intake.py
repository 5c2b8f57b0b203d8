"""Case intake: import the checked rows of a case file (`casebook.casefile`) whole.

`import_cases` checks the rows against what the database already holds (a case with other amounts, a
debtor with another name: `IntakeError`, before anything is written), then writes cases, debtors, links
and audit events in the caller's transaction. Importing the same file twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from clerk.casebook.casefile import CASE_FIELDS, CaseRow, IntakeError, RowError
from clerk.store import audit, db
from models.tables import Case, CaseDebtor, Debtor
from models.values import (
    mask_id,
)


@dataclass(slots=True)
class ImportReport:
    rows: int = 0
    cases_added: int = 0
    cases_unchanged: int = 0
    debtors_added: int = 0
    links_added: int = 0
    sha256: str = ""
    added_case_numbers: list[str] = field(default_factory=list)
    dependants_updated: int = 0


# --- checking -----------------------------------------------------------------------------------------


# --- importing ----------------------------------------------------------------------------------------


def import_cases(session: Session, rows: list[CaseRow], *, actor: str, source: str = "") -> ImportReport:
    """Write checked rows in the caller's transaction. Rows that disagree with what is stored (a case
    with other amounts, a debtor with another name) raise `IntakeError` before anything is written."""
    report = ImportReport(rows=len(rows))
    case_numbers = sorted({r.case_number for r in rows})
    wanted_ids = sorted({r.debtor_id for r in rows})
    cases: dict[str, Case] = {}
    for chunk in db.chunks(case_numbers):
        cases.update(
            (c.case_number, c) for c in session.scalars(select(Case).where(Case.case_number.in_(chunk)))
        )
    debtors: dict[str, Debtor] = {}
    for chunk in db.chunks(wanted_ids):
        debtors.update(
            (d.id_number, d) for d in session.scalars(select(Debtor).where(Debtor.id_number.in_(chunk)))
        )
    links: set[tuple[int, int]] = set()
    known_case_ids = [c.id for c in cases.values()]
    for chunk_ids in db.chunks(known_case_ids):
        stored = select(CaseDebtor.case_id, CaseDebtor.debtor_id).where(CaseDebtor.case_id.in_(chunk_ids))
        links.update((link.case_id, link.debtor_id) for link in session.execute(stored))

    errors = _conflicts_with_stored(rows, cases, debtors)
    if errors:
        raise IntakeError(errors)

    case_ids = {number: case.id for number, case in cases.items()}
    debtor_ids = {id_number: debtor.id for id_number, debtor in debtors.items()}
    new_case_rows = {r.case_number: r for r in rows if r.case_number not in case_ids}
    new_debtor_rows = {r.debtor_id: r for r in rows if r.debtor_id not in debtor_ids}
    if new_case_rows:
        inserted = session.execute(
            insert(Case).returning(Case.id, Case.case_number, sort_by_parameter_order=True),
            [_case_values(r) for r in new_case_rows.values()],
        )
        case_ids.update((number, case_id) for case_id, number in inserted)
    if new_debtor_rows:
        first_case: dict[str, int] = {}  # a new debtor's shard follows its first case (querying.due)
        for r in rows:
            if r.debtor_id in new_debtor_rows:
                case_id = case_ids[r.case_number]
                first_case[r.debtor_id] = min(first_case.get(r.debtor_id, case_id), case_id)
        inserted = session.execute(
            insert(Debtor).returning(Debtor.id, Debtor.id_number, sort_by_parameter_order=True),
            [
                {
                    "kind": r.debtor_kind.value,
                    "id_number": r.debtor_id,
                    "name": r.debtor_name,
                    "dependants": r.dependants,
                    "shard_key": first_case[r.debtor_id],
                }
                for r in new_debtor_rows.values()
            ],
        )
        debtor_ids.update((id_number, debtor_id) for debtor_id, id_number in inserted)

    changed: list[audit.Entry] = []
    for row in rows:  # a later file knows a family better: dependants given are kept, and audited
        known = debtors.get(row.debtor_id)
        if known is not None and row.dependants is not None and known.dependants != row.dependants:
            payload = {"debtor": mask_id(row.debtor_id), "before": known.dependants, "after": row.dependants}
            changed.append(audit.Entry("debtor.dependants_set", actor, row.case_number, payload))
            known.dependants = row.dependants
            report.dependants_updated += 1

    added_links: dict[str, list[str]] = {}
    new_links: list[dict[str, int]] = []
    for row in rows:
        key = (case_ids[row.case_number], debtor_ids[row.debtor_id])
        if key in links:
            continue
        links.add(key)
        new_links.append({"case_id": key[0], "debtor_id": key[1]})
        added_links.setdefault(row.case_number, []).append(mask_id(row.debtor_id))
    if new_links:
        session.execute(insert(CaseDebtor), new_links)

    entries = [
        audit.Entry("case.imported", actor, number, _case_payload(row, added_links.pop(number, []), source))
        for number, row in new_case_rows.items()
    ]
    entries += [
        audit.Entry("case.debtors_added", actor, number, {"debtors": masked, "source": source})
        for number, masked in added_links.items()
    ]
    audit.append_many(session, entries + changed)
    report.cases_added = len(new_case_rows)
    report.cases_unchanged = len(case_numbers) - len(new_case_rows)
    report.debtors_added = len(new_debtor_rows)
    report.links_added = len(new_links)
    report.added_case_numbers = sorted(new_case_rows)
    return report


def _case_values(row: CaseRow) -> dict[str, Any]:
    return {
        "case_number": row.case_number,
        "court_code": row.court_code,
        "filed_on": row.filed_on,
        "judge": row.judge,
        "applicant": row.applicant,
        "principal_fen": row.principal,
        "judgment_interest_fen": row.judgment_interest,
        "costs_fen": row.costs,
        "performance_due_on": row.performance_due_on,
    }


def _case_payload(row: CaseRow, debtors: list[str], source: str) -> dict[str, Any]:
    return {
        "principal_fen": row.principal,
        "judgment_interest_fen": row.judgment_interest,
        "costs_fen": row.costs,
        "filed_on": row.filed_on.isoformat(),
        "performance_due_on": row.performance_due_on.isoformat(),
        "debtors": debtors,
        "source": source,
    }


def _conflicts_with_stored(
    rows: list[CaseRow], cases: Mapping[str, Case], debtors: Mapping[str, Debtor]
) -> list[RowError]:
    errors: list[RowError] = []
    for row in rows:
        case = cases.get(row.case_number)
        if case is not None:
            stored = (
                case.filed_on,
                case.judge,
                case.applicant,
                case.principal_fen,
                case.judgment_interest_fen,
                case.costs_fen,
                case.performance_due_on,
            )
            for name, mine, theirs in zip(CASE_FIELDS, row.case_fields(), stored, strict=True):
                if mine != theirs:
                    errors.append(
                        RowError(
                            row.line,
                            name,
                            "differs from the case already imported; "
                            "correct the case in the court's system, not by re-import",
                        )
                    )
        debtor = debtors.get(row.debtor_id)
        if debtor is not None:
            if debtor.kind != row.debtor_kind.value:
                errors.append(RowError(row.line, "debtor_kind", "differs from the debtor already imported"))
            if debtor.name != row.debtor_name:
                errors.append(RowError(row.line, "debtor_name", "differs from the debtor already imported"))
    return errors
