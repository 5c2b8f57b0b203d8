"""`bulk.insert_rows`, `bulk.update_rows` and `bulk.set_values`, the sweep's bulk writers: what they write
reads back as the ORM and Core write it (timestamps in UTC, JSON, dates, the columns' defaults and `onupdate`s), on SQLite and
PostgreSQL, in more statements than one when the rows need them, and nothing of a failed write stays. On
both the insert tells the new rows' ids without reading them back."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from clerk.store import bulk, db
from models.tables import Asset, Case, CaseDebtor, ControlMeasure, Debtor, Registry, utcnow

_ASSETS, _MEASURES = db.table(Asset), db.table(ControlMeasure)


def _world(sessions: sessionmaker[Session]) -> tuple[int, int, int]:
    """A registry, a debtor and a case: what assets and measures refer to."""
    with sessions.begin() as session:
        registry = Registry(code="bank-a", name="Bank A", kind="bank")
        debtor = Debtor(kind="organisation", id_number="91410100MA44X9KQ1N", name="Firm")
        case = Case(
            case_number="（2024）豫0185执1号",
            court_code="豫0185",
            filed_on=dt.date(2024, 3, 1),
            judge="j",
            applicant="a",
            principal_fen=100_000,
            performance_due_on=dt.date(2024, 3, 1),
        )
        session.add_all([registry, debtor, case])
        session.flush()
        return registry.id, debtor.id, case.id


def _asset(registry_id: int, debtor_id: int, i: int, seen: dt.datetime) -> dict[str, object]:
    return {
        "debtor_id": debtor_id,
        "registry_id": registry_id,
        "kind": "deposit",
        "identifier": f"62220000{i:08d}",
        "balance_fen": i * 100,
        "other_measures": {"measures": [{"authority": "court B", "amount_fen": i}]} if i % 2 else None,
        "purpose": None,
        "description": None,
        "first_seen_at": seen,
        "last_seen_at": seen,
    }


def test_rows_written_in_bulk_read_back_as_written(
    sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bulk, "SQLITE_PARAMETERS", 100)  # ten columns: ten rows a statement, 25 statements
    registry_id, debtor_id, case_id = _world(sessions)
    seen = dt.datetime(2026, 12, 6, 7, 30, 1, 123456, tzinfo=dt.UTC)
    with sessions.begin() as session:
        bulk.insert_rows(session, _ASSETS, [_asset(registry_id, debtor_id, i, seen) for i in range(250)])
    with sessions() as session:
        assets = session.scalars(select(Asset).order_by(Asset.identifier)).all()
    assert len(assets) == 250
    assert [a.balance_fen for a in assets] == [i * 100 for i in range(250)]
    assert assets[3].other_measures == {"measures": [{"authority": "court B", "amount_fen": 3}]}
    assert assets[2].other_measures is None
    assert {a.last_seen_at for a in assets} == {seen}  # aware, in UTC, to the microsecond

    before = utcnow()
    with sessions.begin() as session:
        bulk.insert_rows(  # status and created_at by the columns' defaults
            session,
            _MEASURES,
            [
                {
                    "case_id": case_id,
                    "asset_id": a.id,
                    "registry_id": registry_id,
                    "kind": "freeze",
                    "requested_amount_fen": 50,
                    "idempotency_key": f"{a.id:032x}",
                }
                for a in assets
            ],
        )
    with sessions() as session:
        measures = session.scalars(select(ControlMeasure).order_by(ControlMeasure.id)).all()
    assert {m.status for m in measures} == {"requested"}
    written = utcnow()
    assert all(before <= m.created_at <= written for m in measures)

    later = before + dt.timedelta(seconds=5)
    with sessions.begin() as session:
        bulk.update_rows(
            session,
            _MEASURES,
            [
                {
                    "id": m.id,
                    "status": "effective",
                    "actual_amount_fen": 40 + i,
                    "started_on": dt.date(2026, 12, 6),
                    "expires_on": dt.date(2027, 12, 5),
                }
                for i, m in enumerate(measures[:120])
            ],
        )
        bulk.update_rows(
            session, _ASSETS, [{"id": a.id, "balance_fen": 7, "last_seen_at": later} for a in assets[:5]]
        )
        # Rows that take the same values (a page's lookups): one `WHERE id IN (…)` for them all.
        bulk.set_values(session, _MEASURES, {"status": "failed"}, [m.id for m in measures[200:]])
    with sessions() as session:
        after = session.scalars(select(ControlMeasure).order_by(ControlMeasure.id)).all()
        balances = dict(session.execute(select(Asset.id, Asset.balance_fen)).tuples().all())
        last_seen = dict(session.execute(select(Asset.id, Asset.last_seen_at)).tuples().all())
    assert [m.status for m in after] == ["effective"] * 120 + ["requested"] * 80 + ["failed"] * 50
    assert [m.actual_amount_fen for m in after[:3]] == [40, 41, 42]
    assert after[0].expires_on == dt.date(2027, 12, 5) and after[0].started_on == dt.date(2026, 12, 6)
    assert all(m.updated_at > written for m in after[:120] + after[200:])  # the column's onupdate
    assert all(m.updated_at < written for m in after[120:200])
    assert [balances[a.id] for a in assets[:6]] == [7, 7, 7, 7, 7, 500]
    assert last_seen[assets[0].id] == later and last_seen[assets[5].id] == seen


def test_a_failed_bulk_insert_leaves_nothing(sessions: sessionmaker[Session]) -> None:
    registry_id, debtor_id, _ = _world(sessions)
    seen = utcnow()
    rows = [_asset(registry_id, debtor_id, i, seen) for i in range(30)]
    rows.append(rows[0])  # the same (registry, identifier) twice: the unique key refuses the lot
    with pytest.raises(IntegrityError), sessions.begin() as session:
        bulk.insert_rows(session, _ASSETS, rows)
    with sessions() as session:
        assert session.scalars(select(Asset.id)).all() == []


def test_an_insert_tells_the_ids_of_the_rows_it_inserted(
    sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ids `insert_rows` returns are the rows' own, in order, across statements and after rows were
    deleted at the table's end and in its middle: SQLite gives the largest id before + 1; PostgreSQL's
    COPY takes them from the key's sequence, which goes on where it was."""
    monkeypatch.setattr(bulk, "SQLITE_PARAMETERS", 100)  # ten rows a statement
    registry_id, debtor_id, _ = _world(sessions)
    seen = utcnow()
    with sessions.begin() as session:
        first = bulk.insert_rows(
            session, _ASSETS, [_asset(registry_id, debtor_id, i, seen) for i in range(35)]
        )
        session.execute(_ASSETS.delete().where(_ASSETS.c.id.in_([first[5], first[-1], first[-2]])))
    with sessions.begin() as session:
        ids = bulk.insert_rows(
            session, _ASSETS, [_asset(registry_id, debtor_id, i, seen) for i in range(100, 125)]
        )
    with sessions() as session:
        by_identifier = dict(session.execute(select(Asset.identifier, Asset.id)).tuples().all())
    assert first == [by_identifier.get(f"62220000{i:08d}", first[i]) for i in range(35)]
    assert ids == [by_identifier[f"62220000{i:08d}"] for i in range(100, 125)]
    after = first[-1] if session.get_bind().dialect.name == "postgresql" else first[-3]
    assert ids == list(range(after + 1, after + 26))  # in order, after the largest left (SQLite)


def test_an_insert_into_a_table_without_an_autoincrement_key_tells_no_ids(
    sessions: sessionmaker[Session],
) -> None:
    """A link table's rows (keyed by the two ids they link) are written, and there is no id to tell."""
    _, debtor_id, case_id = _world(sessions)
    with sessions.begin() as session:
        assert (
            bulk.insert_rows(session, db.table(CaseDebtor), [{"case_id": case_id, "debtor_id": debtor_id}])
            == []
        )
    with sessions() as session:
        assert session.execute(select(CaseDebtor.case_id, CaseDebtor.debtor_id)).tuples().all() == [
            (case_id, debtor_id)
        ]


def test_among_finds_what_in_finds_and_binds_one_array_on_postgresql(
    sessions: sessionmaker[Session],
) -> None:
    """`db.among` (the sweep's reads and writes of a page's ids) finds the rows `IN` finds, by numbers and
    by text, none for no values; on PostgreSQL its values are one bound array, not one parameter each."""
    registry_id, debtor_id, _ = _world(sessions)
    seen = utcnow()
    with sessions.begin() as session:
        ids = bulk.insert_rows(session, _ASSETS, [_asset(registry_id, debtor_id, i, seen) for i in range(30)])
    wanted_ids = [*ids[::3], 10**9]
    wanted_text = [*(f"62220000{i:08d}" for i in range(0, 30, 4)), "no such account"]
    with sessions() as session:
        for column, values in ((_ASSETS.c.id, wanted_ids), (_ASSETS.c.identifier, wanted_text)):
            for chosen in (values, []):
                among = select(_ASSETS.c.id).where(db.among(session, column, chosen))
                expected = select(_ASSETS.c.id).where(column.in_(chosen))
                assert sorted(session.scalars(among)) == sorted(session.scalars(expected))
        found = sorted(
            session.scalars(select(_ASSETS.c.id).where(db.among(session, _ASSETS.c.id, wanted_ids)))
        )
        assert found == wanted_ids[:-1]
        statement = select(_ASSETS.c.id).where(db.among(session, _ASSETS.c.id, wanted_ids))
        compiled = statement.compile(dialect=session.get_bind().dialect)
        assert list(compiled.params.values()) == [wanted_ids]
        if session.get_bind().dialect.name == "postgresql":
            assert "= ANY (%(" in str(compiled) and " IN " not in str(compiled)
        else:
            assert " IN (__[POSTCOMPILE_" in str(compiled)  # a parameter per value, when it runs
