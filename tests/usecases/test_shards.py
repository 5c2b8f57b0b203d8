"""The province sweep's shards: every due debtor in exactly one shard, the same one in every sweep, on SQLite
and PostgreSQL; bad shard numbers are refused naming the field."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from clerk import querying
from clerk.casebook.casefile import read_case_file, write_case_file
from clerk.casebook.intake import import_cases
from connectors.simulator.synthetic import sample_case_rows
from models.tables import CaseDebtor
from models.values import InvalidValue

TODAY = dt.date(2026, 11, 23)
NOW = dt.datetime(2026, 11, 23, 12, tzinfo=dt.UTC)


def due(sessions: sessionmaker[Session], shard: querying.Shard, page_size: int = 7) -> list[int]:
    with sessions() as session:
        pages = querying.due_debtor_ids(session, NOW, querying.Schedule(), page_size, shard)
        return [debtor for page in pages for debtor in page]


def test_shards_split_the_due_debtors_into_disjoint_stable_parts(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    path = tmp_path / "cases.csv"
    write_case_file(path, sample_case_rows(seed=3, cases=60, today=TODAY))
    rows, _ = read_case_file(path, max_bytes=10**7, today=TODAY)
    with sessions.begin() as session:
        import_cases(session, rows, actor="user:tester")
    everyone = due(sessions, querying.Shard())
    assert len(everyone) >= 60
    for count in (2, 3, 7):
        parts = [due(sessions, querying.Shard(k, count)) for k in range(count)]
        assert sorted(d for part in parts for d in part) == sorted(everyone), "each debtor in one shard"
        assert all(parts), "no shard is empty at this size"
        assert parts == [due(sessions, querying.Shard(k, count), page_size=1000) for k in range(count)]
        # A case's debtors are swept by one shard (their first case's): two shards never plan one case.
        shard_of = {debtor: k for k, part in enumerate(parts) for debtor in part}
        with sessions() as session:
            links = session.execute(select(CaseDebtor.case_id, CaseDebtor.debtor_id)).all()
        first_case = {d: min(c for c, dd in links if dd == d) for _, d in links}
        by_case: dict[int, set[int]] = {}
        for case_id, debtor in links:
            if first_case[debtor] == case_id and debtor in shard_of:
                by_case.setdefault(case_id, set()).add(shard_of[debtor])
        assert all(len(shards) == 1 for shards in by_case.values())
        assert any(len([d for c, d in links if c == case_id]) > 1 for case_id in by_case), "co-debtors exist"


@pytest.mark.parametrize(
    ("index", "count", "field"),
    [(0, 0, "shards"), (0, querying.MAX_SHARDS + 1, "shards"), (2, 2, "shard"), (-1, 4, "shard")],
)
def test_bad_shard_numbers_are_refused(index: int, count: int, field: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        querying.Shard(index, count)
    assert caught.value.field == field
