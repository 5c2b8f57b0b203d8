"""Importing into the case book: all or nothing, idempotent, audited, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from clerk.casebook import cases
from clerk.casebook.casefile import IntakeError, read_case_file, write_case_file
from clerk.casebook.intake import import_cases
from clerk.store import tree
from connectors.simulator.synthetic import sample_case_rows
from models.tables import AuditEvent, Case, CaseDebtor, Debtor

TODAY = dt.date(2026, 11, 23)
SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "cases.csv"


def counts(sessions: sessionmaker[Session]) -> tuple[int, ...]:
    with sessions() as s:
        return tuple(
            s.scalar(select(func.count()).select_from(t)) or 0 for t in (Case, Debtor, CaseDebtor, AuditEvent)
        )


def run_import(sessions: sessionmaker[Session], path: Path) -> object:
    rows, _ = read_case_file(path, max_bytes=10**8, today=TODAY)
    with sessions.begin() as s:
        return import_cases(s, rows, actor="user:tester", source=path.name)


def write(tmp_path: Path, rows: list[dict[str, str]], name: str = "cases.csv") -> Path:
    write_case_file(tmp_path / name, rows)
    return tmp_path / name


def test_sample_file_imports_and_twice_changes_nothing(sessions: sessionmaker[Session]) -> None:
    report = run_import(sessions, SAMPLES)
    with SAMPLES.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    numbers = {r["case_number"] for r in rows}
    assert report.cases_added == len(numbers)
    assert report.links_added == len(rows)
    after_first = counts(sessions)
    assert after_first[:3] == (len(numbers), len({r["debtor_id"] for r in rows}), len(rows))
    assert after_first[3] == len(numbers)  # one audit event per case
    again = run_import(sessions, SAMPLES)
    assert (again.cases_added, again.links_added, again.cases_unchanged) == (0, 0, len(numbers))
    assert counts(sessions) == after_first
    with sessions() as s:
        assert tree.verify(s).ok


def test_owed_matches_hand_computation_after_import(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    row = {
        "case_number": "(2024)豫0185执1234号",
        "filed_on": "2024-03-01",
        "judge": "李法官",
        "applicant": "王五",
        "principal": "100000",
        "judgment_interest": "",
        "costs": "",
        "performance_due_on": "2024-01-01",
        "debtor_kind": "person",
        "debtor_id": "11010519491231002X",
        "debtor_name": "张三",
    }
    run_import(sessions, write(tmp_path, [row]))
    with sessions() as s:
        view = cases.case_view(s, "(2024)豫0185执1234号", dt.date(2024, 6, 29))  # 180 days late
    assert view.owed["days_late"] == 180
    assert (view.owed["delayed_interest"], view.owed["fee"]) == (315_000, 140_000)
    assert view.owed["remaining"] == 10_455_000
    assert view.debtors == [{"kind": "person", "id": "1101**********002X", "name": "张*"}]


def test_a_bad_row_leaves_the_database_unchanged(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    run_import(sessions, SAMPLES)
    before = counts(sessions)
    rows = sample_case_rows(seed=7, cases=30, today=TODAY)
    rows[-1]["debtor_id"] = rows[-1]["debtor_id"][:-1] + ("0" if rows[-1]["debtor_id"][-1] != "0" else "1")
    with pytest.raises(IntakeError) as caught:
        run_import(sessions, write(tmp_path, rows))
    assert [e.field for e in caught.value.errors] == ["debtor_id"]
    assert caught.value.errors[0].line == len(rows) + 1
    assert counts(sessions) == before


def test_conflicts_with_stored_cases_reject_the_whole_file(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    rows = sample_case_rows(seed=3, cases=5, today=TODAY)
    run_import(sessions, write(tmp_path, rows))
    before = counts(sessions)
    changed = [dict(r) for r in rows]
    changed[0]["principal"] = "1.00"
    new_case = sample_case_rows(seed=4, cases=1, today=TODAY)
    with pytest.raises(IntakeError) as caught, sessions.begin() as s:
        file_rows, _ = read_case_file(write(tmp_path, new_case + changed), max_bytes=10**8, today=TODAY)
        import_cases(s, file_rows, actor="user:tester")
    assert next((e.field, e.rule.split(";")[0]) for e in caught.value.errors if e.field == "principal") == (
        "principal",
        "differs from the case already imported",
    )
    assert counts(sessions) == before


def test_a_new_debtor_joins_an_existing_case(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    rows = sample_case_rows(seed=11, cases=1, today=TODAY)[:1]
    run_import(sessions, write(tmp_path, rows))
    extra = dict(rows[0]) | {
        "debtor_kind": "organisation",
        "debtor_id": "91350100M000100Y43",
        "debtor_name": "某公司",
    }
    report = run_import(sessions, write(tmp_path, [*rows, extra], "more.csv"))
    assert (report.cases_added, report.links_added, report.debtors_added) == (0, 1, 1)
    with sessions() as s:
        actions = s.scalars(select(AuditEvent.action).order_by(AuditEvent.seq)).all()
    assert actions == ["case.imported", "case.debtors_added"]


def test_payments_lower_what_is_owed_and_are_audited(sessions: sessionmaker[Session]) -> None:
    run_import(sessions, SAMPLES)
    with sessions() as s:
        number = s.scalars(select(Case.case_number).order_by(Case.id)).first()
        assert number is not None
        before = cases.owed(cases.get_case(s, number), TODAY).remaining
    with sessions.begin() as s:
        after = cases.record_payment(s, number, 100_00, TODAY, actor="user:tester", today=TODAY)
    assert after.remaining == before - 100_00
    with sessions() as s:
        last = s.scalars(select(AuditEvent).order_by(AuditEvent.seq.desc())).first()
    assert last is not None and last.action == "payment.recorded" and last.case_number == number
